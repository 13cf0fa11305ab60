"""The registry: storing revisions, applying events, and reading them back.

Every method is one transaction. Nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from .db import Database, insert_if_absent
from .errors import NotFound
from .events import LOADED, SUCCEEDED, PipelineEvent, apply_event
from .models import Dataset, Revision

PUBLISHED, UNLISTED, PRIVATE = "published", "unlisted", "private"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def flow_id(owner_id: str, dataset: str, revision: int) -> str:
    return f"{owner_id}/{dataset}/{revision}"


@dataclass(frozen=True)
class Registered:
    owner_id: str
    dataset: str
    revision: int

    @property
    def id(self) -> str:
        return f"{self.owner_id}/{self.dataset}"

    @property
    def flow_id(self) -> str:
        return flow_id(self.owner_id, self.dataset, self.revision)


@dataclass(frozen=True)
class EventOutcome:
    flow_id: str
    state: str
    applied: bool


@dataclass(frozen=True)
class DatasetRevision:
    """A dataset together with one of its revisions."""

    dataset: Dataset
    revision: Revision

    @property
    def flow_id(self) -> str:
        return flow_id(self.dataset.owner_id, self.dataset.name, self.revision.revision)


@dataclass(frozen=True)
class DatasetPage:
    rows: list[tuple[Dataset, Revision]]
    total: int


class Registry:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    def register_revision(self, spec: dict[str, Any]) -> Registered:
        """Store ``spec`` (already validated) as its dataset's next revision.

        The dataset row is created if needed and its revision counter bumped
        by one ``UPDATE ... RETURNING`` in the same transaction as the insert:
        concurrent uploads of one dataset wait on that row and each gets the
        next number, with no gaps and no duplicates.
        """
        meta = spec["meta"]
        owner_id, name = meta["ownerid"], meta["dataset"]
        findability = meta.get("findability", PUBLISHED)
        now = self.clock()
        with self.database.transaction(write=True) as session:
            insert_if_absent(
                session,
                Dataset.__table__,
                {
                    "owner_id": owner_id,
                    "name": name,
                    "last_revision": 0,
                    "findability": findability,
                    "created": now,
                    "modified": now,
                },
                ["owner_id", "name"],
            )
            dataset_id, number = session.execute(
                update(Dataset)
                .where(Dataset.owner_id == owner_id, Dataset.name == name)
                .values(
                    last_revision=Dataset.last_revision + 1,
                    findability=findability,
                    modified=now,
                )
                .returning(Dataset.id, Dataset.last_revision)
            ).one()
            session.add(
                Revision(
                    dataset_id=dataset_id,
                    revision=number,
                    spec=spec,
                    state=LOADED,
                    logs=[],
                    errors=[],
                    stats={},
                    created=now,
                    modified=now,
                )
            )
        return Registered(owner_id, name, number)

    def apply_event(self, event: PipelineEvent) -> EventOutcome:
        """Record an engine event on the revision it is for (the newest by default)."""
        pipeline = event.pipeline
        now = self.clock()
        with self.database.transaction(write=True) as session:
            dataset = session.scalar(
                select(Dataset)
                .where(Dataset.owner_id == pipeline.owner_id, Dataset.name == pipeline.dataset)
                .with_for_update()
            )
            if dataset is None:
                raise NotFound(f"unknown pipeline {str(pipeline)!r}")
            number = event.revision or dataset.last_revision
            revision = session.scalar(
                select(Revision)
                .where(Revision.dataset_id == dataset.id, Revision.revision == number)
                .with_for_update()
            )
            if revision is None:
                raise NotFound(f"pipeline {str(pipeline)!r} has no revision {number}")
            applied = apply_event(revision, event, now)
            if applied:
                revision.modified = now
                dataset.modified = now
                if revision.state == SUCCEEDED:
                    dataset.last_success = now
            return EventOutcome(
                flow_id(dataset.owner_id, dataset.name, revision.revision), revision.state, applied
            )

    def revision(self, owner_id: str, name: str, which: str | int = "latest") -> DatasetRevision:
        """One revision: a number, ``latest``, or ``successful`` (the newest that succeeded)."""
        query = (
            select(Dataset, Revision)
            .join(Revision, Revision.dataset_id == Dataset.id)
            .where(Dataset.owner_id == owner_id, Dataset.name == name)
        )
        if which == "latest":
            query = query.where(Revision.revision == Dataset.last_revision)
        elif which == "successful":
            query = query.where(Revision.state == SUCCEEDED).order_by(Revision.revision.desc())
        else:
            query = query.where(Revision.revision == which)
        with self.database.transaction() as session:
            row = session.execute(query.limit(1)).first()
        if row is None:
            raise NotFound(f"no revision {which} of {owner_id}/{name}")
        return DatasetRevision(*row)

    def list_datasets(
        self, owner_id: str, include_hidden: bool, limit: int, offset: int
    ) -> DatasetPage:
        """The owner's datasets, most recently changed first, with their newest revision."""
        visible = [Dataset.owner_id == owner_id]
        if not include_hidden:
            visible.append(Dataset.findability == PUBLISHED)
        page = (
            select(Dataset, Revision)
            .join(
                Revision,
                (Revision.dataset_id == Dataset.id) & (Revision.revision == Dataset.last_revision),
            )
            .where(*visible)
            .order_by(Dataset.modified.desc(), Dataset.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.database.transaction() as session:
            total = session.scalar(select(func.count()).select_from(Dataset).where(*visible))
            rows = [(dataset, revision) for dataset, revision in session.execute(page)]
        return DatasetPage(rows=rows, total=total or 0)
