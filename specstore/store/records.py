"""What the store is given and answers with: names of revisions, an engine's handover,
and rows as read."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

from ..errors import NotFound

PUBLISHED, UNLISTED, PRIVATE = "published", "unlisted", "private"
# What made a revision, in the seed's words: an upload ("dirty-task"), or its dataset's
# schedule.
UPLOAD, SCHEDULED = "dirty-task", "scheduled"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def flow_id(owner_id: str, dataset: str, revision: int) -> str:
    return f"{owner_id}/{dataset}/{revision}"


def pipeline_id(owner_id: str, dataset: str) -> str:
    """The dataset's main pipeline's id: its key in a revision's ``pipelines``."""
    return f"{owner_id}/{dataset}"


def superseded(by: int) -> str:
    """Why a revision that never ran ended: a newer one of its dataset came first."""
    return f"superseded by revision {by} before it ran"


_SUPERSEDED = re.compile(r"superseded by revision ([0-9]+) before it ran")


def superseded_by(errors: list[str] | None) -> int | None:
    """The revision that superseded one that ended with ``errors`` (None: none did)."""
    found = _SUPERSEDED.fullmatch(errors[0]) if errors else None
    return int(found[1]) if found else None


@dataclass(frozen=True)
class RevisionRef:
    """Names one revision: its dataset, its number, and its row."""

    owner_id: str
    dataset: str
    revision: int
    row_id: int
    # Made by its schedule (False: by an upload, or not known where it was taken up).
    scheduled: bool = field(default=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.owner_id}/{self.dataset}"

    @property
    def flow_id(self) -> str:
        return flow_id(self.owner_id, self.dataset, self.revision)


# A revision being stored (see ``Revisions.upload``) has no row id yet.
UNSTORED = 0


@dataclass(frozen=True)
class Handover:
    """What an engine made of a revision when it took it: the state it is in now
    (REGISTERED: queued to run; INVALID or FAILED: it cannot run, ``errors`` say why), the
    pipelines planned for it and its main pipeline as users are shown it, the lease of
    the runner that holds it, whether the older revisions still waiting are superseded by
    it, and how to take back what the engine wrote outside the database, should the
    transaction that records it fail."""

    state: str
    pipelines: dict[str, Any] | None = None
    shown_pipeline: dict[str, Any] | None = None
    errors: tuple[str, ...] = ()
    lease: tuple[str, dt.datetime] | None = None
    supersedes: bool = False
    undo: Callable[[], None] | None = None


@dataclass(frozen=True)
class EventOutcome:
    flow_id: str
    state: str
    applied: bool


@dataclass(frozen=True)
class DatasetRevision:
    """A dataset together with one of its revisions, as read: the columns selected,
    as attributes named like the models' (``dataset.owner_id``, ``revision.state``)."""

    dataset: SimpleNamespace
    revision: SimpleNamespace

    @classmethod
    def from_row(cls, row: Sequence[Any], names: tuple[str, ...]) -> DatasetRevision:
        """The row's values, named by their ``<table>.<column>`` labels (``names``)."""
        dataset_columns, revision_columns = _columns_by_table(names)
        return cls(
            SimpleNamespace(**{name: row[index] for index, name in dataset_columns}),
            SimpleNamespace(**{name: row[index] for index, name in revision_columns}),
        )

    @property
    def flow_id(self) -> str:
        return flow_id(self.dataset.owner_id, self.dataset.name, self.revision.revision)


@functools.cache
def _columns_by_table(
    labels: tuple[str, ...],
) -> tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
    """Where each ``<table>.<column>`` label of a row is: datasets' columns, revisions'."""
    split = [(index, *label.partition(".")[::2]) for index, label in enumerate(labels)]
    return (
        tuple((index, column) for index, table, column in split if table == "datasets" and column),
        tuple((index, column) for index, table, column in split if table == "revisions" and column),
    )


class ListedDataset(NamedTuple):
    """A dataset as a listing shows it: its names, when it last changed, and its newest
    revision's number and state (a row of the listing's query, taken as it comes)."""

    owner_id: str
    name: str
    modified: dt.datetime
    revision: int
    state: str


@dataclass(frozen=True)
class DatasetPage:
    rows: list[ListedDataset]
    total: int


@dataclass(frozen=True)
class RevisionSummary:
    """A revision as a dataset's page lists it."""

    revision: int
    findability: str
    state: str
    created: dt.datetime
    modified: dt.datetime


class MissingRevision(NotFound):
    """The dataset is there, the revision asked for is not; ``dataset``: the dataset's
    columns as read."""

    def __init__(self, message: str, dataset: SimpleNamespace) -> None:
        super().__init__(message)
        self.dataset = dataset
