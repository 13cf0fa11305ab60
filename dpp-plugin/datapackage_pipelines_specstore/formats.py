"""dataflows' CSV and JSON file formats, written faster: the same text, row for row.

A publication writes every row twice (the table's CSV, by ``dump_to_path``, and its JSON,
by ``specstore.derive``), and dataflows' formats spent more of a run than reading and
casting the rows did: each value of each row passed through its field's serializer
(``str`` for an integer, a string or a boolean, where the writer stringifies it anyway),
dates through ``strftime``, CSV rows through ``csv.DictWriter``'s check of their keys and
JSON rows through the standard library's encoder. Here only the fields whose values
change are converted (dates, times, numbers in JSON, arrays and objects in CSV), dates of
years from 1000 by ``isoformat`` (the same text), CSV rows written by ``csv.writer`` in
the fields' order, and JSON rows encoded by orjson (a row orjson refuses, an integer past
64 bits, as dataflows encodes it). tests/unit/plugin/test_formats.py holds them to
dataflows' own output.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import Any

import orjson
from dataflows.processors.dumpers.formats.base import identity
from dataflows.processors.dumpers.formats.format_csv import CSVFormat
from dataflows.processors.dumpers.formats.format_json import JSONFormat


def _iso_dates(serializer: Any) -> Any:
    """``serializer`` (dataflows' date serializer), by ``isoformat`` where that writes the
    same text: from the year 1000 (``strftime`` may not pad shorter years)."""

    def iso_date(value: dt.date) -> Any:
        return value.isoformat() if value.year >= 1000 else serializer(value)

    return iso_date


def _conversions(fmt: Any, unchanged: Any) -> list[tuple[str, Any]]:
    """(field, serializer) for each field of ``fmt`` whose serializer is not ``unchanged``
    (what the writer does to a value by itself)."""
    plain_date = type(fmt).SERIALIZERS.get("date")
    return [
        (name, _iso_dates(serializer) if serializer is plain_date else serializer)
        for name, field in fmt.fields.items()
        if (serializer := field.descriptor["serializer"]) is not unchanged
    ]


def _converted(fmt: Any, values: Any, conversions: list[tuple[Any, Any]]) -> None:
    """``values`` (a dict, or a list by field index) with each conversion applied, as
    dataflows applies it: not to a missing value (None), nor to one of the schema's
    ``missingValues``."""
    missing = fmt.missing_values
    for key, serializer in conversions:
        try:
            value = values[key]
        except KeyError:
            continue  # a row without the field: it is left out, as dataflows leaves it
        if value is not None and value not in missing:
            values[key] = serializer(value)


class CsvRows(CSVFormat):
    """dataflows' CSV: the header row, then each row in the fields' order (a value the
    row lacks, or None, empty)."""

    def __init__(self, file: Any, schema: Any, **options: Any) -> None:
        super().__init__(file, schema, **options)
        self.rows = csv.writer(file)  # the dialect of dataflows' DictWriter: excel
        index = {name: position for position, name in enumerate(self.headers)}
        self.conversions = [
            (index[name], serializer) for name, serializer in _conversions(self, str)
        ]

    def write_row(self, row: dict[str, Any]) -> None:
        values = [row.get(name) for name in self.headers]
        _converted(self, values, self.conversions)
        self.rows.writerow(values)


class JsonRows(JSONFormat):
    """dataflows' JSON: an array of objects, keys sorted."""

    def __init__(self, file: Any, schema: Any, **options: Any) -> None:
        super().__init__(file, schema, **options)
        self.conversions = _conversions(self, identity)
        # What orjson does not know (a Decimal in an array, say): as dataflows' encoder has it.
        self.unknown = self.Encoder().default

    def initialize_file(self, file: Any) -> None:
        file.write("[")
        self.first_row = True

    def write_row(self, row: dict[str, Any]) -> None:
        if self.conversions:
            row = dict(row)  # the row flows on to the other steps as it was
            _converted(self, row, self.conversions)
        self.write_transformed_row(row)

    def write_transformed_row(self, transformed_row: dict[str, Any]) -> None:
        try:
            text = orjson.dumps(
                transformed_row, default=self.unknown, option=orjson.OPT_SORT_KEYS
            ).decode()
        except TypeError:
            text = json.dumps(transformed_row, sort_keys=True, ensure_ascii=True, cls=self.Encoder)
        self.writer.write(text if self.first_row else "," + text)
        self.first_row = False
