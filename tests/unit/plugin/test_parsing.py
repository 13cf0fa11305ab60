"""Dates read as dates as a table is parsed (datapackage_pipelines_specstore.parsing): the
rows a load yields, and the values it refuses, are those of dataflows' own cast."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dataflows import Flow, load
from datapackage_pipelines_specstore.parsing import date_fields, read_dates

SCHEMA = {
    "fields": [
        {"name": "day", "type": "date"},
        {"name": "other", "type": "date", "format": "%d/%m/%Y"},
        {"name": "text", "type": "string"},
    ]
}


def _load(path: Path, faster: bool) -> list[dict]:
    extra = {"post_parse": [read_dates(date_fields(SCHEMA))]} if faster else {}
    step = load(
        str(path),
        name="t",
        override_schema=SCHEMA,
        cast_strategy=load.CAST_WITH_SCHEMA,
        **extra,
    )
    return Flow(step).results()[0][0]


def test_only_date_fields_of_the_default_format_are_read_early():
    assert date_fields(SCHEMA) == {"day"}
    assert date_fields(None) == set()


def test_the_rows_are_those_of_dataflows_own_cast(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "day,other,text\n"
        "2020-01-31,31/01/2020,2020-01-31\n"
        "2020-3-5,01/03/2020,b\n"  # one-digit month and day: strptime reads them
        "\uff12\uff10\uff12\uff10-04-01,01/04/2020,c\n"  # other scripts' digits: so does it
        ",,\n",
        "utf-8",
    )
    rows = _load(path, faster=True)
    assert rows == _load(path, faster=False)
    assert [row["day"] for row in rows] == [
        dt.date(2020, 1, 31),
        dt.date(2020, 3, 5),
        dt.date(2020, 4, 1),
        None,
    ]
    assert rows[0]["text"] == "2020-01-31"  # a string field keeps its text


@pytest.mark.parametrize(
    "value", ["2021-02-29", "2020-13-01", "20200105", "2020-01-05x", '" 2020-01-05"']
)
def test_a_value_that_is_no_date_is_refused_as_before(tmp_path, value):
    path = tmp_path / "t.csv"
    path.write_text(f"day,other,text\n{value},01/01/2020,x\n", "utf-8")
    with pytest.raises(Exception) as faster:  # dataflows' own error, whatever it is
        _load(path, faster=True)
    with pytest.raises(Exception) as plain:
        _load(path, faster=False)
    assert type(faster.value) is type(plain.value)
    assert str(faster.value) == str(plain.value)
