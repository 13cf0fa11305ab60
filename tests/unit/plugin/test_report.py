"""The validation report: each refused value coded, placed and described, never quoted."""

from __future__ import annotations

from datapackage_pipelines_specstore.report import (
    MAX_ERRORS,
    TableCheck,
    first_errors,
    report,
)
from tableschema import Field
from tableschema.exceptions import CastError


def _refused(field: Field, value):
    try:
        field.cast_value(value)
    except CastError as exc:
        return exc
    raise AssertionError(f"{value!r} was not refused")


def test_a_type_error_and_each_constraint_get_goodtables_codes():
    check = TableCheck("years", "http://example.org/y.csv", ["country", "year"])
    year = Field({"name": "year", "type": "integer", "constraints": {"minimum": 1900}})
    country = Field({"name": "country", "type": "string", "constraints": {"required": True}})
    check.failed(0, "19x9", _refused(year, "19x9"), year)
    check.failed(1, "1066", _refused(year, "1066"), year)
    check.failed(2, None, _refused(country, None), country)
    check.rows = 3
    table = check.as_table()
    assert [
        (e["code"], e["row-number"], e["column-number"], e["field"]) for e in table["errors"]
    ] == [
        ("type-or-format-error", 1, 2, "year"),
        ("minimum-constraint", 2, 2, "year"),
        ("required-constraint", 3, 1, "country"),
    ]
    assert table["errors"][0]["message"] == (
        "data row 1, field 'year': a text of 4 characters is not a valid integer"
    )
    assert table["error-counts"] == {
        "minimum-constraint": 1,
        "required-constraint": 1,
        "type-or-format-error": 1,
    }
    assert "19x9" not in str(table) and "1066" not in str(table)
    whole = report([table])
    assert (whole["valid"], whole["error-count"], whole["table-count"]) == (False, 3, 1)
    assert first_errors(whole, 2) == [
        "resource years, data row 1, field 'year': a text of 4 characters is not a valid integer",
        "resource years, data row 2, field 'year': a text of 4 characters breaks its minimum "
        "constraint",
    ]


def test_errors_are_counted_all_and_listed_up_to_the_limit():
    check = TableCheck("t", "", ["n"])
    field = Field({"name": "n", "type": "integer"})
    error = _refused(field, "x")
    for row in range(MAX_ERRORS + 50):
        check.failed(row, "x", error, field)
    table = check.as_table()
    assert table["error-count"] == MAX_ERRORS + 50
    assert len(table["errors"]) == MAX_ERRORS
