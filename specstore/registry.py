"""The registry: storing revisions, applying events, and reading them back.

Every method is one transaction. Nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from .db import Database, insert_if_absent
from .errors import NotFound
from .events import (
    FINAL_STATES,
    LOADED,
    MAX_STORED_LOG_LINES,
    SUCCEEDED,
    PipelineEvent,
    apply_event,
    end_run,
)
from .metrics import count_event
from .models import Dataset, Revision

PUBLISHED, UNLISTED, PRIVATE = "published", "unlisted", "private"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def flow_id(owner_id: str, dataset: str, revision: int) -> str:
    return f"{owner_id}/{dataset}/{revision}"


@dataclass(frozen=True)
class RevisionRef:
    """Names one revision: its dataset, its number, and its row."""

    owner_id: str
    dataset: str
    revision: int
    row_id: int

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

    def register_revision(self, spec: dict[str, Any]) -> RevisionRef:
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
            stored = Revision(
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
            session.add(stored)
            session.flush()
            return RevisionRef(owner_id, name, number, stored.id)

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
            count_event(event.event)
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
        self, owner_id: str | None, include_hidden: bool, limit: int, offset: int
    ) -> DatasetPage:
        """The owner's datasets (everyone's when ``owner_id`` is None), most recently
        changed first, with their newest revision."""
        visible = [] if owner_id is None else [Dataset.owner_id == owner_id]
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

    def revisions(self, owner_id: str, name: str, limit: int = 50) -> list[Revision]:
        """A dataset's revisions, newest first."""
        query = (
            select(Revision)
            .join(Dataset, Revision.dataset_id == Dataset.id)
            .where(Dataset.owner_id == owner_id, Dataset.name == name)
            .order_by(Revision.revision.desc())
            .limit(limit)
        )
        with self.database.transaction() as session:
            return list(session.scalars(query))

    # -- what the engines need -------------------------------------------------------

    def spec_of(self, ref: RevisionRef) -> dict[str, Any]:
        with self.database.transaction() as session:
            return session.scalar(select(Revision.spec).where(Revision.id == ref.row_id))

    def superseded_by(self, ref: RevisionRef) -> int | None:
        """The dataset's newest revision number if it is newer than ``ref``, else None."""
        with self.database.transaction() as session:
            newest = session.scalar(
                select(Dataset.last_revision)
                .join(Revision, Revision.dataset_id == Dataset.id)
                .where(Revision.id == ref.row_id)
            )
        return None if newest == ref.revision else newest

    def record_plan(self, ref: RevisionRef, pipelines: dict[str, Any]) -> None:
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Revision).where(Revision.id == ref.row_id).values(pipelines=pipelines)
            )

    def append_log(self, ref: RevisionRef, lines: list[str]) -> None:
        """Add specstore's own lines to a revision's log (no change of state)."""
        with self.database.transaction(write=True) as session:
            revision = session.get(Revision, ref.row_id, with_for_update=True)
            if revision is not None:
                revision.logs = (list(revision.logs) + lines)[-MAX_STORED_LOG_LINES:]

    def end(self, ref: RevisionRef, state: str, errors: list[str]) -> bool:
        """End a revision that cannot run (INVALID or FAILED, with the reasons)."""
        now = self.clock()
        with self.database.transaction(write=True) as session:
            revision = session.scalar(
                select(Revision).where(Revision.id == ref.row_id).with_for_update()
            )
            if revision is None or not end_run(revision, state, errors, now):
                return False
            revision.modified = now
            session.execute(
                update(Dataset).where(Dataset.id == revision.dataset_id).values(modified=now)
            )
            return True

    def claim(self, ref: RevisionRef, owner: str, until: dt.datetime) -> bool:
        """Take the lease on an unfinished revision, unless a live runner holds it."""
        now = self.clock()
        with self.database.transaction(write=True) as session:
            result = session.execute(
                update(Revision)
                .where(
                    Revision.id == ref.row_id,
                    Revision.state.not_in(FINAL_STATES),
                    or_(
                        Revision.lease_until.is_(None),
                        Revision.lease_until < now,
                        Revision.lease_owner == owner,
                    ),
                )
                .values(lease_owner=owner, lease_until=until)
            )
            return result.rowcount == 1

    def renew(self, refs: list[RevisionRef], owner: str, until: dt.datetime) -> None:
        if not refs:
            return
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Revision)
                .where(Revision.id.in_([ref.row_id for ref in refs]), Revision.lease_owner == owner)
                .values(lease_until=until)
            )

    def release(self, ref: RevisionRef, owner: str) -> None:
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Revision)
                .where(Revision.id == ref.row_id, Revision.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def orphaned(
        self, states: tuple[str, ...], idle_since: dt.datetime, newest_only: bool = False
    ) -> list[RevisionRef]:
        """Revisions in ``states`` (of each dataset's newest revision only, if asked) that
        no live runner holds and that have not changed since ``idle_since``: left behind
        by a process that stopped."""
        now = self.clock()
        joined = Revision.dataset_id == Dataset.id
        if newest_only:
            joined = and_(joined, Revision.revision == Dataset.last_revision)
        query = (
            select(Dataset.owner_id, Dataset.name, Revision.revision, Revision.id)
            .join(Revision, joined)
            .where(
                Revision.state.in_(states),
                Revision.modified < idle_since,
                or_(Revision.lease_until.is_(None), Revision.lease_until < now),
            )
            .order_by(Revision.modified)
        )
        with self.database.transaction() as session:
            return [RevisionRef(*row) for row in session.execute(query)]
