"""The validation report: every table checked against its schema as it is loaded.

The checks are tableschema's (the Frictionless library that goodtables runs for its
schema checks): each value cast by its field's type and format, then its constraints.
They run on the rows as the load casts them, once (why not goodtables or frictionless
reading the file again: docs/decisions/0004-validation-in-the-stream.md). A value that
fails is described, never quoted (whoever may read the dataset reads its report), and
its row is left out of the outputs; the run fails once every row has been checked, so
the report has every problem at once.

The report has goodtables' shape (``valid``, ``error-count``, ``table-count``,
``tables`` with ``errors`` of ``code``, ``row-number``, ``column-number``, ``message``),
with ``error-counts`` by code added, and at most ``MAX_ERRORS`` errors listed a table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MAX_ERRORS = 100
REPORT_VERSION = "specstore-1"
_CONSTRAINT = re.compile(r'has constraint "(\w+)"')
CONSTRAINT_CODES = {
    "required": "required-constraint",
    "unique": "unique-constraint",
    "minLength": "minimum-length-constraint",
    "maxLength": "maximum-length-constraint",
    "minimum": "minimum-constraint",
    "maximum": "maximum-constraint",
    "pattern": "pattern-constraint",
    "enum": "enumerable-constraint",
}


def describe_value(value: Any) -> str:
    """What a value is, without what it says: its type and length."""
    if value is None or value == "":
        return "an empty value"
    if isinstance(value, str):
        return f"a text of {len(value)} character{'s' if len(value) != 1 else ''}"
    return f"a value of type {type(value).__name__}"


class TableCheck:
    """One table's errors, as its rows are cast."""

    def __init__(self, resource: str, source: str, headers: list[str]) -> None:
        self.resource = resource
        self.source = source
        self.headers = headers
        self.rows = 0
        self.error_count = 0
        self.counts: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []

    def failed(self, index: int, value: Any, error: Exception, field: Any) -> None:
        """Row ``index`` (0: the first data row) has ``value`` that ``field`` refuses."""
        if field is None:
            code, column, name = "schema-error", None, None
            message = f"data row {index + 1}: a row that fails its schema"
        else:
            name = field.name
            column = self.headers.index(name) + 1 if name in self.headers else None
            found = _CONSTRAINT.search(str(error))
            if found:
                constraint = found.group(1)
                code = CONSTRAINT_CODES.get(constraint, "constraint-error")
                reason = f"breaks its {constraint} constraint"
            else:
                code = "type-or-format-error"
                kind = field.type + (
                    f" ({field.format})" if field.format not in (None, "default") else ""
                )
                reason = f"is not a valid {kind}"
            message = f"data row {index + 1}, field {name!r}: {describe_value(value)} {reason}"
        self.error_count += 1
        self.counts[code] = self.counts.get(code, 0) + 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(
                {
                    "code": code,
                    "row-number": index + 1,
                    "column-number": column,
                    "field": name,
                    "message": message,
                }
            )

    def as_table(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "source": self.source,
            "valid": self.error_count == 0,
            "row-count": self.rows,
            "error-count": self.error_count,
            "error-counts": dict(sorted(self.counts.items())),
            "headers": self.headers,
            "errors": self.errors,
        }

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.resource}.json").write_text(json.dumps(self.as_table()), "utf-8")


def read_tables(folder: Path, names: list[str]) -> list[dict[str, Any]]:
    """The tables' checks the load wrote, in ``names``' order (a table the load did not
    check, having read no rows, counts as valid with none)."""
    tables = []
    for name in names:
        try:
            tables.append(json.loads((folder / f"{name}.json").read_text("utf-8")))
        except (OSError, ValueError):
            tables.append(TableCheck(name, "", []).as_table())
    return tables


def report(tables: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for table in tables:
        for code, count in table["error-counts"].items():
            counts[code] = counts.get(code, 0) + count
    return {
        "version": REPORT_VERSION,
        "valid": all(table["valid"] for table in tables),
        "error-count": sum(table["error-count"] for table in tables),
        "error-counts": dict(sorted(counts.items())),
        "table-count": len(tables),
        "tables": tables,
    }


def first_errors(validation: dict[str, Any], count: int = 5) -> list[str]:
    """The report's first ``count`` errors, each a line naming its resource."""
    lines = []
    for table in validation["tables"]:
        for error in table["errors"]:
            if len(lines) == count:
                return lines
            lines.append(f"resource {table['resource']}, {error['message']}")
    return lines
