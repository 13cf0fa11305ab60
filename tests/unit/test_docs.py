"""The documentation holds together: every relative link in README.md and docs/ names a
file that is there, and an anchor a heading of it has (as GitHub makes them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PATH_PARAMETER = re.compile(r"{(\w+)}")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens and spaces
    dropped, spaces made hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"^#{1,6} ", line)}


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_names_a_file_and_a_heading_that_are_there(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not looked up here
        path, _, anchor = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        if not found.exists():
            broken.append(f"{target}: no such file")
        elif anchor and found.suffix == ".md" and anchor not in _anchors(found):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_the_api_reference_documents_every_route_of_the_openapi_document_and_no_other():
    """Each ``METHOD /path`` of specstore/schemas/openapi.json is in a heading of
    docs/reference/api.md (``<name>`` there for ``{name}``), and each one there is a route."""
    document = json.loads((ROOT / "specstore" / "schemas" / "openapi.json").read_text())
    routes = {
        method.upper() + " " + PATH_PARAMETER.sub(r"<\1>", path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    headings = [
        line
        for line in (ROOT / "docs/reference/api.md").read_text().splitlines()
        if line.startswith("## ")
    ]
    documented = {found for line in headings for found in re.findall(r"`([A-Z]+ /[^`]*)`", line)}
    assert documented == routes


def test_every_test_the_documentation_names_is_there():
    """docs/explanation/guarantees.md and the rest name the test that shows each claim:
    each file and each test function they name exists."""
    sources = {path: path.read_text() for path in (ROOT / "tests").rglob("*.py")}
    defined = set(re.findall(r"^\s*def (test_\w+)", "\n".join(sources.values()), re.MULTILINE))
    modules = {path.stem for path in sources}
    missing = []
    for page in PAGES:
        text = page.read_text()
        missing += [
            f"{page.name}: {path}"
            for path in re.findall(r"\btests/[\w/]+\.py", text)
            if not (ROOT / path).exists()
        ]
        missing += [
            f"{page.name}: {name}"
            for name in re.findall(r"\b(test_\w+)\b", text)
            if name not in defined and name not in modules
        ]
    assert missing == []
