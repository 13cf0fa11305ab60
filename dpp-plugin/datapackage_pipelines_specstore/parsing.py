"""Dates read as dates before dataflows casts a table's rows: the same values, sooner.

tableschema casts a date of the default format with ``datetime.strptime``, which took a
quarter of a run of a table with one date column. A value that is exactly ``YYYY-MM-DD``
(ASCII digits) is the date ``date.fromisoformat`` reads, wherever ``strptime`` reads one
too; tabulator's ``post_parse`` hook turns such values into dates as the rows are parsed,
and tableschema passes a date through as it is. Any other text (white space around it,
one-digit months, a day a month does not have) is left as it was, for tableschema to cast
or to refuse as it always has.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

ExtendedRow = tuple[int, list[str], list[Any]]


def date_fields(schema: Mapping[str, Any] | None) -> set[str]:
    """The names of ``schema``'s date fields of the default format."""
    fields = (schema or {}).get("fields") or []
    return {
        str(field.get("name"))
        for field in fields
        if isinstance(field, dict)
        and field.get("type") == "date"
        and field.get("format", "default") == "default"
    }


def read_dates(names: set[str]) -> Any:
    """A tabulator ``post_parse`` processor: the values of the columns ``names`` that are
    ISO dates, as dates."""

    def processor(extended_rows: Iterator[ExtendedRow]) -> Iterator[ExtendedRow]:
        columns: list[int] | None = None
        for row_number, headers, row in extended_rows:
            if columns is None:
                columns = [index for index, name in enumerate(headers or []) if name in names]
            for index in columns:
                if index < len(row):
                    row[index] = _date(row[index])
            yield row_number, headers, row

    return processor


def _date(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 10 and _ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value  # no such day: tableschema refuses it, as before
    return value
