"""A run's publication, in the data hub's shape, on both engines.

For each table ``R``: ``R`` itself (``source/tabular``, the file as fetched), ``R_csv``
and ``R_json`` (``derived/csv``, ``derived/json``), and ``R_csv_preview`` (its first
rows, ``derived/preview``) when it is longer than that; each file that is not a table
(``source/non-tabular``); the ``validation_report`` (``derived/report``, see
:mod:`.report`); ``<dataset>_zip`` (``derived/zip``); and one ``datapackage.json`` that
lists them all, written last: it is the commit point.

The steps, in a plan's order:

* ``specstore.derive`` (rows flowing): the JSON of every table and its preview, from
  the rows as loaded and cast (the CSV is ``dump_to_path``'s);
* ``specstore.publication`` (once every row has passed): the report stored; if a table
  breaks its schema, the run fails here with the report's first errors; else every
  data object stored under its content's key (stored once: a key that exists is not
  written again), the zip, and the descriptor staged;
* ``specstore.publish`` (:func:`publish`): the descriptor stored under the revision's
  key (:func:`commit`), once the run's other outputs are in place, then the spec's own
  outputs swapped into the dataset folder (``steps.publish_outputs``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from .formats import JsonRows
from .report import first_errors, read_tables, report
from .steps import (
    ARCHIVE_DIR,
    DESCRIPTOR_FILE,
    PACKAGE_DIR,
    PUBLICATION_DIR,
    VALIDATION_DIR,
    StepError,
    child,
    inside,
    publish_outputs,
    with_hash,
)
from .storage import StorageError, content_type, data_key, descriptor_key, from_parameters

log = logging.getLogger("specstore")

PREVIEW_ROWS = 2000
JSON_DIR = "json"
PREVIEW_DIR = "preview"
REPORT_NAME = "validation_report"
STAGED_DESCRIPTOR = "datapackage.json"
SUMMARY_FILE = "summary.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def derived_names(tables: list[str], dataset: str) -> dict[str, str]:
    """Every resource name a publication adds, with what it is derived from."""
    names = {REPORT_NAME: "the validation report", f"{dataset}_zip": "the zip of the package"}
    for table in tables:
        for suffix in ("_csv", "_json", "_csv_preview"):
            names[table + suffix] = f"the derived data of {table}"
    return names


# -- specstore.derive ----------------------------------------------------------------------


def derive(parameters: dict[str, Any]) -> list[Any]:
    """The tables' JSON (dataflows' JSON dumper in :mod:`.formats`' faster format, the rows
    not cast again) and their previews, as the rows pass."""
    from dataflows import dump_to_path

    folder = Path(parameters["staging"]) / PUBLICATION_DIR
    rows = int(parameters.get("preview-rows") or PREVIEW_ROWS)
    return [
        _previews(folder / PREVIEW_DIR, rows),
        dump_to_path(
            str(folder / JSON_DIR),
            format="json",
            file_formatters={"json": JsonRows},
            validator_options={"field_names": []},
        ),
    ]


def _previews(folder: Path, limit: int) -> Any:
    def step(package: Any) -> Any:
        yield package.pkg
        for rows in package:
            yield _preview(rows, folder, limit)

    return step


def _preview(rows: Any, folder: Path, limit: int) -> Any:
    """The rows, passed on; the first ``limit`` written (as the JSON dumper writes them)
    when there are more."""
    from tableschema import Schema

    first: list[dict] = []
    count = 0
    for row in rows:
        count += 1
        if count <= limit:
            first.append(dict(row))
        yield row
    if count > limit:
        out = io.StringIO()
        writer = JsonRows(out, Schema(rows.res.descriptor.get("schema") or {}))
        for row in first:
            writer.write_row(row)
        writer.finalize_file()
        folder.mkdir(parents=True, exist_ok=True)
        child(folder, f"{rows.res.name}.json").write_text(out.getvalue(), "utf-8")


# -- specstore.publication ----------------------------------------------------------------


def publication(parameters: dict[str, Any]) -> list[Any]:
    from dataflows import finalizer

    return [finalizer(lambda: publish_data(parameters))]


class _Item:
    """One published resource: its file, descriptor and key."""

    def __init__(self, name: str, path: Path, kind: str, suffix: str, **descriptor: Any) -> None:
        self.name, self.path, self.kind, self.suffix = name, path, kind, suffix
        self.descriptor = descriptor
        self.md5 = _md5(path)
        self.bytes = path.stat().st_size

    @property
    def file_name(self) -> str:
        return f"{self.name}.{self.suffix}"


def publish_data(parameters: dict[str, Any]) -> None:
    staging = Path(parameters["staging"])
    work = staging / PUBLICATION_DIR
    package_dir = staging / PACKAGE_DIR
    owner_id, dataset = parameters["ownerid"], parameters["dataset"]
    tables, files = list(parameters.get("tables") or []), list(parameters.get("files") or [])
    storage = from_parameters(parameters["storage"])
    public = parameters.get("findability", "published") != "private"
    descriptor = json.loads((package_dir / DESCRIPTOR_FILE).read_text("utf-8"))
    by_name = {res.get("name"): res for res in descriptor.get("resources") or []}

    # The dataset's objects turned first, so that those stored already, which are not
    # stored again, are as readable as this revision says.
    try:
        storage.turn(owner_id, dataset, public)
    except StorageError as exc:
        raise StepError(f"the publication cannot be stored: {exc}") from None
    validation = report(read_tables(work / VALIDATION_DIR, tables))
    report_path = work / f"{REPORT_NAME}.json"
    report_path.write_text(json.dumps(validation, indent=2), "utf-8")
    report_item = _Item(
        REPORT_NAME, report_path, "derived/report", "json", derivedFrom=tables, format="json"
    )
    report_url = _put(storage, owner_id, dataset, report_item, public)
    summary = {
        "valid": validation["valid"],
        "error_count": validation["error-count"],
        "error_counts": validation["error-counts"],
        "report_url": report_url,
        "report_key": _key(owner_id, dataset, report_item),
    }
    _write_json(work / SUMMARY_FILE, {"validation": summary})
    if not validation["valid"]:
        count = validation["error-count"]
        counts = ", ".join(f"{code}: {n}" for code, n in summary["error_counts"].items())
        raise StepError(
            f"{count} value{'s' if count != 1 else ''} break{'s' if count == 1 else ''} "
            f"the schema ({counts}); every problem is in the validation report: {report_url}",
            first_errors(validation),
        )

    items: list[_Item] = []
    for name in tables:
        table = by_name.get(name) or {}
        schema = table.get("schema") or {}
        rows = table.get("count_of_rows")
        archived = next((work / ARCHIVE_DIR).glob(f"{name}.*"), None)
        if archived is not None:
            fmt = archived.suffix.lstrip(".")
            items.append(_Item(name, archived, "source/tabular", fmt, format=fmt, schema=schema))
        csv = inside(package_dir, table.get("path") or f"{name}.csv")
        items.append(
            _Item(
                f"{name}_csv",
                csv,
                "derived/csv",
                "csv",
                derivedFrom=[name],
                format="csv",
                schema=schema,
                count_of_rows=rows,
                encoding="utf-8",
            )
        )
        as_json = inside(work / JSON_DIR, str(Path(table.get("path") or name).with_suffix(".json")))
        items.append(
            _Item(
                f"{name}_json",
                as_json,
                "derived/json",
                "json",
                derivedFrom=[name],
                format="json",
                schema=schema,
                count_of_rows=rows,
            )
        )
        preview = work / PREVIEW_DIR / f"{name}.json"
        if preview.is_file():
            items.append(
                _Item(
                    f"{name}_csv_preview",
                    preview,
                    "derived/preview",
                    "json",
                    derivedFrom=[name],
                    format="json",
                    schema=schema,
                )
            )
    for name in files:
        given = by_name.get(name) or {}
        path = inside(package_dir, given["path"])
        fmt = str(given.get("format") or path.suffix.lstrip(".") or "bin")
        kept = {
            k: v for k, v in given.items() if k not in ("name", "path", "bytes", "hash", "format")
        }
        items.append(_Item(name, path, "source/non-tabular", fmt, format=fmt, **kept))
    items.append(report_item)
    package = {
        key: value
        for key, value in descriptor.items()
        if key not in ("resources", "hash", "bytes", "count_of_rows", "profile")
    }
    inline = [res for res in descriptor.get("resources") or [] if "data" in res]
    zip_item = _zipped(work, dataset, package, items, inline, parameters)
    items.append(zip_item)

    urls = {
        item.name: _put(storage, owner_id, dataset, item, public)
        for item in items
        if item is not report_item
    }
    urls[REPORT_NAME] = report_url
    resources = [
        {
            "name": item.name,
            "path": urls[item.name],
            **{
                key: value
                for key, value in item.descriptor.items()
                if key != "derivedFrom" and value is not None
            },
            "mediatype": content_type(item.file_name).split(";")[0],
            "bytes": item.bytes,
            "hash": item.md5,
            "datahub": _datahub(item),
        }
        for item in items
    ] + inline
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    final = {
        **package,
        "id": f"{owner_id}/{dataset}",
        "resources": resources,
        "datahub": {
            "owner": parameters.get("owner") or owner_id,
            "ownerid": owner_id,
            "findability": parameters.get("findability", "published"),
            "flowid": f"{owner_id}/{dataset}/{parameters['revision']}",
            "created": parameters.get("created") or now,
            "modified": now,
            "stats": {
                "rowcount": sum(
                    int(table.get("count_of_rows") or 0)
                    for name, table in by_name.items()
                    if name in tables
                ),
                "bytes": sum(item.bytes for item in items),
            },
        },
    }
    final["datahub"]["hash"] = with_hash(json.loads(json.dumps(final)))["hash"]
    _write_json(work / STAGED_DESCRIPTOR, final)
    summary_outputs = [
        {
            "name": item.name,
            "type": item.kind,
            "format": item.descriptor.get("format"),
            "bytes": item.bytes,
            "hash": item.md5,
            "url": urls[item.name],
            "key": _key(owner_id, dataset, item),
            **(
                {
                    "fields": [
                        field.get("name") for field in item.descriptor["schema"].get("fields") or []
                    ]
                }
                if item.kind == "source/tabular" and item.descriptor.get("schema")
                else {}
            ),
        }
        for item in items
    ]
    _write_json(
        work / SUMMARY_FILE,
        {
            "datapackage_url": storage.url(
                descriptor_key(owner_id, dataset, parameters["revision"])
            ),
            "datapackage_key": descriptor_key(owner_id, dataset, parameters["revision"]),
            "outputs": summary_outputs,
            "validation": summary,
        },
    )


def _datahub(item: _Item) -> dict[str, Any]:
    found: dict[str, Any] = {"type": item.kind}
    if "derivedFrom" in item.descriptor:
        found["derivedFrom"] = item.descriptor["derivedFrom"]
    return found


def _key(owner_id: str, dataset: str, item: _Item) -> str:
    return data_key(owner_id, dataset, item.name, item.md5, item.file_name)


def _put(storage: Any, owner_id: str, dataset: str, item: _Item, public: bool) -> str:
    key = _key(owner_id, dataset, item)
    try:
        if storage.has(key):
            log.info("%s: unchanged (%s), not stored again", item.name, item.md5)
        else:
            storage.put(key, item.path, public)
    except StorageError as exc:
        raise StepError(f"the publication cannot be stored: {exc}") from None
    return storage.url(key)


def _zipped(
    work: Path,
    dataset: str,
    package: dict[str, Any],
    items: list[_Item],
    inline: list[dict[str, Any]],
    parameters: dict[str, Any],
) -> _Item:
    """The whole package as one zip: its data under ``data/``, and a descriptor with
    paths inside the zip (the same bytes for the same data: no times in it)."""
    target = work / f"{dataset}.zip"
    members = [item for item in items if item.kind != "source/tabular"]
    descriptor = {
        **package,
        "resources": [
            {
                "name": item.name,
                "path": f"data/{item.file_name}",
                **{
                    key: value
                    for key, value in item.descriptor.items()
                    if key != "derivedFrom" and value is not None
                },
                "bytes": item.bytes,
                "hash": item.md5,
                "datahub": _datahub(item),
            }
            for item in members
        ]
        + inline,
    }
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        entry = zipfile.ZipInfo(DESCRIPTOR_FILE, _ZIP_TIME)
        entry.external_attr = 0o644 << 16
        archive.writestr(
            entry, json.dumps(descriptor, indent=2, sort_keys=True) + "\n", zipfile.ZIP_DEFLATED
        )
        for item in members:
            entry = zipfile.ZipInfo(f"data/{item.file_name}", _ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            with item.path.open("rb") as source, archive.open(entry, "w") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
    return _Item(
        f"{dataset}_zip",
        target,
        "derived/zip",
        "zip",
        derivedFrom=[item.name for item in members],
        format="zip",
    )


# -- specstore.publish: the commit, then the outputs swapped in -----------------------------


def publish(parameters: dict[str, Any]) -> list[Any]:
    """The outputs published once every row has passed (the publication committed first,
    then the staged outputs swapped in: ``steps.publish_outputs``); what status shows of the
    publication in the step's statistics (``publication``)."""
    from dataflows import finalizer

    class Publish(finalizer):
        def __init__(self) -> None:
            super().__init__(self.done)

        def done(self) -> None:
            summary = publish_outputs(parameters, commit)
            if summary is not None:
                self.stats["publication"] = summary

    return [Publish()]


def commit(parameters: dict[str, Any]) -> dict[str, Any] | None:
    """The staged descriptor stored under the revision's key; what status shows of the
    publication (None: the plan publishes nothing)."""
    if not parameters.get("storage"):
        return None
    work = Path(parameters["staging"]) / PUBLICATION_DIR
    storage = from_parameters(parameters["storage"])
    key = descriptor_key(parameters["ownerid"], parameters["dataset"], parameters["revision"])
    public = parameters.get("findability", "published") != "private"
    try:
        storage.put(key, work / STAGED_DESCRIPTOR, public)
        storage.turn(parameters["ownerid"], parameters["dataset"], public)
    except StorageError as exc:
        raise StepError(f"the publication cannot be stored: {exc}") from None
    summary = json.loads((work / SUMMARY_FILE).read_text("utf-8"))
    log.info("published %s", summary["datapackage_url"])
    return summary


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - a content address, as the hub's
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False), "utf-8")
    os.replace(temporary, path)
