"""What a scheduled revision compares itself with: the last run of its dataset, if that
run succeeded (see ``specstore.pipelines.unchanged``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..events import FINAL_STATES, SUCCEEDED
from . import statements
from .database import Database
from .records import SCHEDULED, RevisionRef, superseded_by


@dataclass(frozen=True)
class Baseline:
    """A dataset's last revision that ran, which succeeded: its number, its plan and the
    statistics its run reported (the version of each source it read among them)."""

    revision: int
    plan: dict[str, Any]
    stats: dict[str, Any]


class Baselines:
    def __init__(self, database: Database) -> None:
        self.database = database

    def of(self, ref: RevisionRef) -> Baseline | None:
        """For a scheduled revision, its dataset's newest earlier revision that ran, if it
        ended SUCCEEDED; None for an upload, or when that run failed, is not over, or
        is not among the last few revisions (then the revision runs)."""
        rows = self.database.read(
            lambda reader: reader.all(statements.earlier_revisions(), row_id=ref.row_id)
        )
        if not rows or rows[0][0] != SCHEDULED:
            return None
        number = _last_run(rows)
        if number is None:
            return None
        row = self.database.read(
            lambda reader: reader.first(
                statements.plan_and_stats(), row_id=ref.row_id, number=number
            )
        )
        if row is None or not isinstance(row[0], dict) or not isinstance(row[1], dict):
            return None
        return Baseline(number, row[0], row[1])


def _last_run(rows: list[Any]) -> int | None:
    """Of a dataset's earlier revisions (newest first), the number of the newest that ran,
    if it succeeded."""
    for _, number, state, errors in rows:
        if state in FINAL_STATES and superseded_by(errors) is not None:
            continue  # it never ran
        return number if state == SUCCEEDED else None
    return None
