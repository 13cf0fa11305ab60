"""A data package's resources as they are planned: where each comes from (its own URL,
or the one the spec's ``resource-mapping`` gives for its name or path), and what it
becomes: a table (its format from a fixed list, read with the ``processing`` step's
tabulator options for it, its declared schema applied, named the step's ``output``), a
file copied byte for byte, or inline data kept as it is."""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from datapackage_pipelines_specstore.fetch import Limits, url_problem
from datapackage_pipelines_specstore.steps import DESCRIPTOR_FILE, TABLE_FORMATS

from ..events import INVALID
from ..validation import SchemaValidator
from .layout import PlanError

RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# A file's path inside the package, kept when each of its parts is this plain.
FILE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,127}")
MAX_FILE_DEPTH = 8
EXTENSION = re.compile(r"[a-z0-9]{1,16}")
# Always tables; JSON only with a schema (otherwise it is a file).
ALWAYS_TABLES = ("csv", "tsv", "xls", "xlsx", "ods")
MEDIA_TYPES = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
}


@dataclass(frozen=True)
class Resource:
    """One resource of the input, as planned: where it comes from and what it becomes."""

    name: str
    url: str | None  # None: its data is inline in the descriptor
    format: str
    descriptor: dict[str, Any]  # the input's descriptor of it
    table: bool
    options: dict[str, Any] | None = None  # a table's tabulator options
    schema: dict[str, Any] | None = None  # a table's declared schema
    file: str | None = None  # its path in the package, for a resource copied as a file


def given_descriptor(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data package the spec carries (``descriptor``, else ``resource_info``), if any."""
    parameters = spec["inputs"][0].get("parameters") or {}
    descriptor = parameters.get("descriptor")
    if isinstance(descriptor, dict) and isinstance(descriptor.get("resources"), list):
        return descriptor
    info = parameters.get("resource_info")
    if isinstance(info, list) and info:
        return {**(descriptor if isinstance(descriptor, dict) else {}), "resources": info}
    return None


def plan_resources(
    spec: Mapping[str, Any], descriptor: Mapping[str, Any], limits: Limits, max_resources: int
) -> list[Resource]:
    """Every resource of the input as it will be planned; PlanError when one cannot be
    (or when there are more than ``max_resources``)."""
    source = spec["inputs"][0]
    base_url = source["url"]
    mapping = (source.get("parameters") or {}).get("resource-mapping") or {}
    processing = spec.get("processing") or []
    listed = descriptor.get("resources") or []
    if len(listed) > max_resources:
        raise PlanError(
            INVALID,
            f"the data package has {len(listed)} resources, more than this server takes "
            f"in one dataset ({max_resources}, MAX_RESOURCES)",
        )

    found: list[tuple[str, str | None, str | None, dict[str, Any]]] = []
    for index, resource in enumerate(listed):
        if not isinstance(resource, dict):
            raise PlanError(INVALID, f"resource #{index + 1} of the data package is not an object")
        name, path = resource.get("name"), resource.get("path")
        if path is None and "data" in resource:
            what = name if isinstance(name, str) and name else f"#{index + 1}"
            found.append((what, None, None, resource))
            continue
        if not isinstance(path, str) or not path:
            what = name or f"#{index + 1}"
            raise PlanError(INVALID, f"resource {what}: only resources with one path can be loaded")
        try:
            if not isinstance(name, str) or not name:
                name = posixpath.splitext(posixpath.basename(urlsplit(path).path))[0].lower()
            url = mapping.get(name) or mapping.get(path) or urljoin(base_url, _url_path(path))
        except ValueError:
            raise PlanError(
                INVALID, f"resource #{index + 1}: {path!r} is not a URL or path"
            ) from None
        problem = url_problem(url, limits)
        if problem:
            raise PlanError(INVALID, f"resource {name}: {problem}")
        found.append((name, path, url, resource))

    known = {name for name, *_ in found} | {path for _, path, *_ in found if path}
    for index, step in enumerate(processing):
        if step["input"] not in known:
            missing = step["input"]
            raise PlanError(
                INVALID,
                f"processing[{index}].input: the data package has no resource {missing!r}",
            )

    planned: list[Resource] = []
    for name, path, url, resource in found:
        if url is None or path is None:
            planned.append(Resource(name, None, "", resource, table=False))
            continue
        steps = [step for step in processing if step["input"] in (name, path)]
        planned += _variants(name, path, url, resource, steps)
    _check_names(planned)
    return planned


def _variants(
    name: str,
    path: str,
    url: str,
    resource: dict[str, Any],
    steps: list[dict[str, Any]],
) -> list[Resource]:
    """What one input resource becomes: a file, or one table per processing step."""
    declared = _format(resource, path)
    table = declared in ALWAYS_TABLES or (
        declared in TABLE_FORMATS and (bool(resource.get("schema")) or bool(steps))
    )
    if not table and not steps:
        file = _file_path(name, path, declared)
        return [Resource(name, url, declared, resource, table=False, file=file)]
    variants = [
        (step["output"], step.get("tabulator") or {}, step.get("schema")) for step in steps
    ] or [(name, {}, None)]
    planned = []
    for output, options, schema in variants:
        chosen = str(options.get("format") or declared).lower()
        if chosen not in TABLE_FORMATS:
            raise PlanError(
                INVALID,
                f"resource {output!r}: {chosen!r} is not a table format "
                f"({', '.join(TABLE_FORMATS)})",
            )
        schema = schema or resource.get("schema")
        if schema == {}:
            schema = None  # "schema": {} (as some clients write it) gives no schema: inferred
        if schema is not None:
            problem = _schema_problem(schema)
            if problem:
                raise PlanError(INVALID, f"resource {output!r}: its schema {problem}")
        options = {key: value for key, value in options.items() if key != "format"}
        if isinstance(resource.get("encoding"), str) and "encoding" not in options:
            options["encoding"] = resource["encoding"]
        if isinstance(options.get("skip_rows"), int):
            # A number of rows (as the DataHub client writes it): the first N rows.
            options["skip_rows"] = list(range(1, options["skip_rows"] + 1))
        planned.append(
            Resource(output, url, chosen, resource, True, options or None, schema or None)
        )
    return planned


def _url_path(path: str) -> str:
    """A resource's path as a URL reference: a relative path's spaces, backslashes and
    other characters URLs do not hold are percent-encoded; an absolute URL is as given."""
    if "://" in path or path.startswith("//"):
        return path
    return quote(path, safe="/:@!$&'()*+,;=~?#%")


def _format(resource: Mapping[str, Any], path: str) -> str:
    declared = resource.get("format")
    if isinstance(declared, str) and declared.strip():
        return declared.strip().lower()
    mediatype = resource.get("mediatype")
    if isinstance(mediatype, str) and mediatype.lower() in MEDIA_TYPES:
        return MEDIA_TYPES[mediatype.lower()]
    extension = posixpath.splitext(urlsplit(path).path)[1].lstrip(".").lower()
    return extension


def _file_path(name: str, path: str, format: str) -> str:
    """Where a file resource goes in the package: its own relative path when every part
    of it is plain, else ``<name>.<extension>``."""
    parts = unquote(urlsplit(path).path).split("/") if "://" not in path else []
    if (
        parts
        and len(parts) <= MAX_FILE_DEPTH
        and all(FILE_PART.fullmatch(part) for part in parts)
        and not path.startswith("/")
    ):
        return "/".join(parts)
    extension = format if EXTENSION.fullmatch(format or "") else ""
    return f"{name}.{extension}" if extension else name


def _check_names(planned: list[Resource]) -> None:
    names: set[str] = set()
    paths = {DESCRIPTOR_FILE}
    for resource in planned:
        if not RESOURCE_NAME.fullmatch(resource.name):
            raise PlanError(
                INVALID,
                f"resource {resource.name!r}: names are lower-case letters, digits, '.', '_', '-'",
            )
        if resource.name in names:
            raise PlanError(INVALID, f"resource {resource.name!r}: two resources have this name")
        names.add(resource.name)
        path = f"{resource.name}.csv" if resource.table else resource.file
        if path is None:
            continue
        if path.lower() in paths:
            raise PlanError(INVALID, f"resource {resource.name!r}: two files would be {path!r}")
        paths.add(path.lower())


@functools.cache
def _table_schema_validator() -> SchemaValidator:
    from importlib import resources

    profile = json.loads(
        resources.files("tableschema").joinpath("profiles", "table-schema.json").read_text("utf-8")
    )
    return SchemaValidator(profile)


def _schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a Table Schema that can be applied, or None."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        return "is not a Table Schema (an object with a list of fields)"
    problems = _table_schema_validator().errors(schema)
    if problems:
        return f"is not a valid Table Schema: {problems[0]}"
    return None
