"""A table's CSV (``dump_to_path`` as a plan runs it) and its derived JSON and preview
(``specstore.derive``), written by datapackage_pipelines_specstore.formats: the very CSV
and the same JSON values dataflows' own formats write, for every type of field."""

from __future__ import annotations

import json
from pathlib import Path

from dataflows import Flow, dump_to_path, load
from datapackage_pipelines_specstore.catalogue import PROCESSORS
from datapackage_pipelines_specstore.publication import derive
from datapackage_pipelines_specstore.steps import PUBLICATION_DIR

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "value", "type": "number"},
        {"name": "day", "type": "date"},
        {"name": "at", "type": "datetime"},
        {"name": "time", "type": "time"},
        {"name": "flag", "type": "boolean"},
        {"name": "name", "type": "string"},
        {"name": "month", "type": "yearmonth"},
        {"name": "year", "type": "year"},
        {"name": "span", "type": "duration"},
        {"name": "tags", "type": "array"},
        {"name": "extra", "type": "object"},
    ],
    "missingValues": ["", "n/a"],
}
CSV = (
    "id,value,day,at,time,flag,name,month,year,span,tags,extra\n"
    "1,1.5,2020-01-31,2020-01-31T10:00:00Z,10:30:00,true,Zürich ☃,2020-01,2020,P1DT2H,"
    '"[1, ""a""]","{""k"": [true, null]}"\n'
    '2,-0.0001,0999-12-31,1999-12-31T23:59:59Z,00:00:00,false,"a, ""quoted""\nline",1999-12,'
    "1999,PT1S,[],{}\n"
    "3,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a,n/a\n"
    # An integer past 64 bits: orjson refuses it; the row is written as dataflows writes it.
    "123456789012345678901234567890,,,,,,,,,,,\n"
)


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    path.write_text(CSV, "utf-8")
    return path


def _loaded(path: Path):
    return load(
        str(path), name="table", override_schema=SCHEMA, cast_strategy=load.CAST_WITH_SCHEMA
    )


def _rows(folder: Path) -> list:
    return json.loads((folder / "table.json").read_text("utf-8"))


def test_the_csv_is_byte_for_byte_dataflows_own(tmp_path):
    table = _table(tmp_path)
    plan_step = PROCESSORS["dump_to_path"]({"out-path": str(tmp_path / "plan")})
    Flow(_loaded(table), plan_step).process()
    Flow(_loaded(table), dump_to_path(str(tmp_path / "dataflows"))).process()

    written = (tmp_path / "plan" / "table.csv").read_bytes()
    assert written == (tmp_path / "dataflows" / "table.csv").read_bytes()
    lines = written.decode("utf-8").split("\r\n")
    assert lines[0] == "id,value,day,at,time,flag,name,month,year,span,tags,extra"
    assert lines[1] == (
        "1,1.5,2020-01-31,2020-01-31T10:00:00,10:30:00,True,Zürich ☃,2020-01,2020,P1DT2H,"
        '"[1, ""a""]","{""k"": [true, null]}"'
    )
    assert lines[3] == "3,,,,,,,,,,,"  # each of the missingValues written empty


def test_the_derived_json_holds_what_dataflows_own_json_dumper_writes(tmp_path):
    table = _table(tmp_path)
    Flow(_loaded(table), *derive({"staging": str(tmp_path / "staging")})).process()
    Flow(_loaded(table), dump_to_path(str(tmp_path / "dataflows"), format="json")).process()

    derived = _rows(tmp_path / "staging" / PUBLICATION_DIR / "json")
    assert derived == _rows(tmp_path / "dataflows")
    assert derived[0] == {
        "id": 1,
        "value": 1.5,
        "day": "2020-01-31",
        "at": "2020-01-31T10:00:00",
        "time": "10:30:00",
        "flag": True,
        "name": "Zürich ☃",
        "month": "2020-01",
        "year": 2020,
        "span": "P1DT2H",
        "tags": [1, "a"],
        "extra": {"k": [True, None]},
    }
    assert derived[3]["id"] == 123456789012345678901234567890
    assert derived[3]["value"] is None


def test_a_table_longer_than_the_preview_has_its_first_rows_previewed(tmp_path):
    table = _table(tmp_path)
    staging = tmp_path / "staging"
    Flow(_loaded(table), *derive({"staging": str(staging), "preview-rows": 2})).process()

    preview = _rows(staging / PUBLICATION_DIR / "preview")
    assert preview == _rows(staging / PUBLICATION_DIR / "json")[:2]
