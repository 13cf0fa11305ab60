"""Helpers for the pipeline tests: the quick start's example spec, waiting for a run,
and reading back what a run wrote."""

from __future__ import annotations

import json
import sqlite3
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_DATA = EXAMPLES / "datapackage"
EXAMPLE_BASE_URL = "http://127.0.0.1:8000/"
FINAL = ("SUCCEEDED", "FAILED", "INVALID")
# Past LOADED: the engine has the revision (or it ended before it could).
HANDED_OVER = ("REGISTERED", "RUNNING", *FINAL)


def pipelines_for_dpp(root: Path, owner_id: str = "alice") -> dict[str, Any]:
    """The owner's pipelines as DPP reads them (PyYAML, each dataset's file), by dataset."""
    found = {}
    for path in sorted((root / owner_id).glob("*/specstore.source-spec.yaml")):
        for pipeline_id, details in yaml.safe_load(path.read_text())["pipelines"].items():
            found[pipeline_id.split("/", 1)[1]] = details
    return found


def example_spec(base_url: str, dataset: str = "gdp", **meta: Any) -> dict[str, Any]:
    """examples/spec.yaml, its URLs pointing at ``base_url`` instead of port 8000."""
    text = (EXAMPLES / "spec.yaml").read_text().replace(EXAMPLE_BASE_URL, base_url)
    spec = yaml.safe_load(text)
    spec["meta"].update(dataset=dataset, **meta)
    return spec


def carrying_its_package(base_url: str, dataset: str = "gdp", **meta: Any) -> dict[str, Any]:
    """The example spec with its data package's descriptor inline, as the DataHub client
    sends it: planned and handed over during the upload, with no fetch."""
    spec = example_spec(base_url, dataset=dataset, **meta)
    spec["inputs"][0]["parameters"]["descriptor"] = json.loads(
        (EXAMPLE_DATA / "datapackage.json").read_text()
    )
    return spec


def wait_for(get_status: Callable[[], dict[str, Any]], states=FINAL, timeout: float = 90.0):
    """Poll a status body until its state is one of ``states``; the last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = get_status()
        if body.get("state") in states:
            return body
        time.sleep(0.2)
    raise AssertionError(f"still {body.get('state')} after {timeout}s: {body}")


def sqlite_tables(path: Path) -> dict[str, dict[str, Any]]:
    """Every table of a SQLite file: its column types and its rows."""
    with sqlite3.connect(path) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
        return {
            name: {
                "columns": {
                    row[1]: row[2] for row in connection.execute(f'PRAGMA table_info("{name}")')
                },
                "rows": sorted(connection.execute(f'SELECT * FROM "{name}"').fetchall()),
            }
            for name in names
        }


def database_tables(url: str) -> dict[str, dict[str, Any]]:
    """Every table of a SQL database: its column types (generic names) and its rows."""
    engine = sqlalchemy.create_engine(url)
    try:
        inspector = sqlalchemy.inspect(engine)
        tables = {}
        with engine.connect() as connection:
            for name in inspector.get_table_names():
                columns = {
                    column["name"]: type(column["type"]).__name__.upper()
                    for column in inspector.get_columns(name)
                }
                rows = connection.execute(sqlalchemy.text(f'SELECT * FROM "{name}"')).all()
                tables[name] = {"columns": columns, "rows": sorted(tuple(row) for row in rows)}
        return tables
    finally:
        engine.dispose()


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def files_under(path: Path) -> dict[str, bytes]:
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


GDP_ROWS = [("France", 2019, 2728.87), ("Germany", 2019, 3888.33), ("Italy", 2019, 2011.3)]


POPULATION_ROWS = [
    ("France", 2019, 67012883),
    ("Germany", 2019, 83019213),
    ("Italy", 2019, 60359546),
]
