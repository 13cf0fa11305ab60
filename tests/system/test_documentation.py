"""The examples the documentation shows are what happens: the tutorial's commands run as
written (the servers' addresses aside) against ``python server.py`` on its embedded
defaults, each answer shown checked against the real one, "…" standing for what changes
from run to run; ``make example`` prints what the README shows, whatever ports are taken,
and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
# A shell block right after an HTML comment that names this file is run by it.
CHECKED_BLOCK = re.compile(
    r"<!--[^>]*tests/system/test_documentation\.py[^>]*-->\n```sh\n(.*?)```", re.DOTALL
)
# The pages whose checked blocks run, in turn, in one shell: the tutorial's push first.
CHECKED_PAGES = ("docs/tutorial.md", "docs/reference/api.md")
ANY = "…"
TUTORIAL = ROOT / "docs" / "tutorial.md"


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


def _checked_blocks(page: Path) -> list[str]:
    """The shell blocks of ``page`` that follow a comment naming this test, in order."""
    found = CHECKED_BLOCK.findall(page.read_text())
    assert found, f"{page}: no shell block is marked as checked"
    return found


def _steps(block: str) -> list[Step]:
    """Each command (continued lines joined) with the answer shown under it."""
    steps: list[Step] = []
    pending = ""
    for line in block.splitlines():
        if line.startswith("# ") and not pending:
            steps[-1].shown.append(line[2:])
            continue
        pending += line.rstrip("\\") + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            steps.append(Step(pending))
            pending = ""
    return steps


def matches(shown: Any, real: Any) -> bool:
    """Whether a real answer is the one shown: ``"…"`` is any value; a list ending in it,
    any list that starts as shown; an object with a ``"…"`` key may have other keys."""
    if shown == ANY:
        return True
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return False
        keys = {key for key in shown if key != ANY}
        if ANY not in shown and set(real) != keys:
            return False
        return all(key in real and matches(shown[key], real[key]) for key in keys)
    if isinstance(shown, list):
        if not isinstance(real, list):
            return False
        if shown and shown[-1] == ANY:
            head = shown[:-1]
            return len(real) >= len(head) and all(map(matches, head, real))
        return len(real) == len(shown) and all(map(matches, shown, real))
    return shown == real


def test_the_matcher_tells_a_shown_answer_from_another():
    assert matches({"a": 1, "b": ANY}, {"a": 1, "b": [2]})
    assert not matches({"a": 1}, {"a": 1, "b": 2})
    assert matches({"a": 1, ANY: ANY}, {"a": 1, "b": 2})
    assert not matches({"a": 1, ANY: ANY}, {"a": 2, "b": 2})
    assert matches(["x", ANY], ["x", "y", "z"]) and not matches(["x", ANY], ["y"])
    assert not matches([1, 2], [1, 2, 3])


def _workspace(tmp_path: Path, data_port: int) -> Path:
    """A folder to run the commands in, as the repository is: the examples (their data
    server's port the test's own) and the virtualenv."""
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples")
    spec = work / "examples" / "spec.yaml"
    spec.write_text(spec.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{data_port}"))
    (work / ".venv").symlink_to(ROOT / ".venv")
    return work


def test_the_tutorial_and_the_api_reference_show_what_happens(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db")
    data_port = free_port()
    work = _workspace(tmp_path, data_port)

    def ours(text: str) -> str:
        """The documented addresses, as the test's servers have them."""
        text = text.replace("127.0.0.1:5000", f"127.0.0.1:{server.port}")
        text = text.replace("http.server 8000", f"http.server {data_port}")
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{data_port}")

    steps = [
        step
        for page in CHECKED_PAGES
        for block in _checked_blocks(ROOT / page)
        for step in _steps(block)
    ]
    assert sum(1 for step in steps if step.shown) == 11  # every answer shown is checked
    script = ["set -eu"]
    for index, step in enumerate(steps):
        script += [ours(step.command), f"printf '\\n@@@ {index}\\n'"]
    process = subprocess.Popen(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=180)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the data server it started
    assert process.returncode == 0, err
    # What `make run` says first, as the tutorial shows it (the database's file aside).
    said = re.search(r"database (\S+): (schema created .*)", server.log.read_text())
    shown = re.search(r"database sqlite:///specstore.db: (.*)", TUTORIAL.read_text())
    assert said and shown and said[1] == f"sqlite:///{tmp_path}/specstore.db"
    assert said[2] == shown[1]
    answers = re.split(r"^@@@ \d+\n", out, flags=re.MULTILINE)[:-1]
    assert len(answers) == len(steps)
    for step, answer in zip(steps, answers, strict=True):
        if not step.shown:
            continue
        shown = ours(" ".join(step.shown))
        if shown.startswith("{"):
            real = json.loads(answer)
            assert matches(json.loads(shown), real), (
                f"{step.command}\nshown: {shown}\nreal: {answer}"
            )
        else:
            assert answer.strip() == shown, step.command


def _readme_example_lines() -> list[str]:
    """What the README shows ``make example`` printing."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(make example.*?)```", text, re.DOTALL)
    assert block, "README.md shows no `make example`"
    return [line[2:] for line in block[1].splitlines() if line.startswith("# ")]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def port_8000_taken():
    """Port 8000 held by another listener, as the by-hand tutorial leaves it (if something
    else holds it already, it is taken all the same)."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
    except OSError:
        pass
    yield
    holder.close()


def _make_example(server: Any, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return subprocess.run(
        ["make", "-s", "example"],
        cwd=ROOT,
        env={**server.env, "TMPDIR": str(scratch), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_make_example_prints_what_the_readme_shows_with_port_8000_taken(
    start_server, tmp_path, port_8000_taken
):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db")
    ran = _make_example(server, tmp_path)
    assert ran.returncode == 0, ran.stderr
    printed = ran.stdout.splitlines()
    shown = _readme_example_lines()
    assert printed[0] == shown[0] and printed[-1] == shown[-1] == "SUCCEEDED"
    # The states in between as the run went: each shown one, none other.
    assert set(printed[1:-1]) <= set(shown[1:-1]) <= {"REGISTERED", "RUNNING"}
    port = int(re.search(r"serving the example data on port (\d+)", ran.stderr)[1])
    assert not _listening(port)  # its data server is gone
    assert list((tmp_path / "tmp").iterdir()) == []  # and its temporary spec


def test_make_example_names_a_taken_example_port_and_a_specstore_not_running(
    start_server, tmp_path, port_8000_taken
):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db")
    taken = _make_example(server, tmp_path, EXAMPLE_PORT="8000")
    assert taken.returncode != 0
    assert "port 8000 (EXAMPLE_PORT) is taken" in taken.stderr
    nobody = free_port()
    absent = _make_example(server, tmp_path, PORT=str(nobody))
    assert absent.returncode != 0
    assert f"specstore does not answer at http://127.0.0.1:{nobody}: start it with" in (
        absent.stderr
    )
    assert "no dataset alice/gdp" in server.run_cli("status", "alice/gdp").stdout  # none sent
