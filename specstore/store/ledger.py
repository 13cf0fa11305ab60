"""What the engines ask of the store: revisions handed over, moved on by events, ended;
the schedules that come due; and what a stopped process left behind.

A revision only ever moves forward (:mod:`specstore.events`), and one rule ends those
that will never run: a revision handed over to run supersedes the older ones of its
dataset still waiting (LOADED or REGISTERED), which end FAILED with
:func:`~.records.superseded`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..errors import NotFound
from ..events import (
    FINAL_STATES,
    QUEUE,
    REGISTERED,
    SUCCEEDED,
    PipelineEvent,
    append_log,
    apply_event,
    end_run,
)
from ..metrics import count_event, count_retries
from . import statements
from .database import Database
from .records import (
    SCHEDULED,
    EventOutcome,
    Handover,
    RevisionRef,
    flow_id,
    superseded,
    utcnow,
)
from .sql import Transaction


def supersedes(handover: Handover, revision: int) -> bool:
    """Whether ``handover`` of ``revision`` ends the older revisions still waiting."""
    return handover.state == REGISTERED and handover.supersedes and revision > 1


def supersede_parameters(dataset_id: int, newer: int, now: dt.datetime) -> dict[str, Any]:
    return {
        "dataset_row": dataset_id,
        "newer": newer,
        "superseded_errors": [superseded(newer)],
        "now": now,
    }


def handover_values(handover: Handover, now: dt.datetime) -> dict[str, Any]:
    """The revision's columns as ``handover`` leaves it."""
    values: dict[str, Any] = {"state": handover.state, "modified": now}
    if handover.pipelines is not None:
        values["pipelines"] = handover.pipelines
    if handover.shown_pipeline is not None:
        values["shown_pipeline"] = handover.shown_pipeline
    if handover.lease is not None:
        values["lease_owner"], values["lease_until"] = handover.lease
    if handover.state in FINAL_STATES:
        values.update(
            success=handover.state == SUCCEEDED,
            errors=list(handover.errors),
            started=now,
            ended=now,
        )
    else:
        values["queued"] = now
    return values


def handed_over(
    tx: Transaction,
    dataset_id: int,
    revision: int,
    handover: Handover,
    now: dt.datetime,
    superseded_already: bool = False,
) -> None:
    """What follows the handover of a dataset's ``revision``: queued, it supersedes the
    older ones waiting (unless the statement that stored it did)."""
    if handover.state == REGISTERED:
        count_event(QUEUE)
    if supersedes(handover, revision) and not superseded_already:
        tx.send(statements.supersede(), **supersede_parameters(dataset_id, revision, now))


def new_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` by column, as the statements' ``new_<column>`` parameters."""
    return {f"new_{name}": value for name, value in values.items()}


class Ledger:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    # -- handing over, ending ------------------------------------------------------------

    def hand_over(self, ref: RevisionRef, handover: Handover, again: bool = False) -> bool:
        """Record what the engine made of a LOADED revision it took (see :class:`Handover`),
        or, ``again``, of a REGISTERED one it took a second time; False (nothing recorded)
        when it is in that state no more."""
        now = self.clock()
        values = handover_values(handover, now)
        from_state = REGISTERED if again else "LOADED"
        with self.database.write() as tx:
            dataset_id = tx.scalar(statements.dataset_of_revision(), row_id=ref.row_id)
            moved = dataset_id is not None and tx.count(
                statements.update_revision(tuple(values), from_state),
                row_id=ref.row_id,
                **new_values(values),
            )
            if not moved:
                return False
            handed_over(tx, dataset_id, ref.revision, handover, now)
            tx.send(
                statements.update_dataset(("modified",)), dataset_row=dataset_id, new_modified=now
            )
            return True

    def end(
        self,
        ref: RevisionRef,
        state: str,
        errors: list[str],
        log: list[str] | None = None,
        stats: dict[str, Any] | None = None,
        plan: dict[str, Any] | None = None,
    ) -> bool:
        """End a revision that does not run: INVALID or FAILED, with the reasons, or
        SUCCEEDED with nothing to do (its ``log`` says why, its ``stats`` and ``plan`` are
        what it stands on); False when it had ended already."""
        now = self.clock()
        with self.database.write() as tx:
            row = tx.first(statements.tracked_by_id(), row_id=ref.row_id)
            if row is None:
                return False
            dataset_id, *tracked = row
            target = SimpleNamespace(**dict(zip(statements.TRACKED, tracked, strict=True)))
            if not end_run(target, state, errors, now):
                return False
            append_log(target, log or [])
            if stats is not None:
                target.stats = stats
            changed = {**vars(target), "modified": now}
            if plan is not None:
                changed["pipelines"] = plan
            tx.send(
                statements.update_revision(tuple(changed)),
                row_id=ref.row_id,
                **new_values(changed),
            )
            dataset = {"modified": now}
            if state == SUCCEEDED:
                dataset["last_success"] = now
            tx.send(
                statements.update_dataset(tuple(dataset)),
                dataset_row=dataset_id,
                **new_values(dataset),
            )
            return True

    def end_if_superseded(self, ref: RevisionRef) -> bool:
        """The one rule, for a revision about to be planned or run: when its dataset has a
        newer revision, it ends FAILED, superseded (True), and is not run."""
        newer = self.database.read(
            lambda reader: reader.scalar(statements.newest_of_revision(), row_id=ref.row_id)
        )
        if newer is None or newer == ref.revision:
            return False
        self.end(ref, "FAILED", [superseded(newer)])
        return True

    def spec_of(self, ref: RevisionRef) -> dict[str, Any]:
        query = statements.spec_of()
        return self.database.read(lambda reader: reader.scalar(query, row_id=ref.row_id))

    # -- events ------------------------------------------------------------------------------

    def apply_event(
        self,
        event: PipelineEvent,
        plan: dict[str, Any] | None = None,
        shown_pipeline: dict[str, Any] | None = None,
    ) -> EventOutcome:
        """Record an engine event on the revision it is for (the newest by default), and,
        when an engine starts a revision it planned only then, its plan and its main
        pipeline as shown.

        One transaction, pipelined (two round trips): both rows read and locked in one
        statement (only the columns an event changes: the spec and the plan stay in the
        database), then the columns that changed written back.
        """
        pipeline = event.pipeline
        now = self.clock()
        named = {"owner_id": pipeline.owner_id, "name": pipeline.dataset}
        with self.database.write(pipelined=True) as tx:
            by_number = event.revision is not None
            row = tx.first(statements.event_target(by_number), **named, number=event.revision)
            if row is None:
                newest = tx.scalar(statements.last_revision(), **named)
                if newest is None:
                    raise NotFound(f"unknown pipeline {str(pipeline)!r}")
                missing = event.revision or newest
                raise NotFound(f"pipeline {str(pipeline)!r} has no revision {missing}")
            dataset_id, row_id, revision, *tracked = row
            before = dict(zip(statements.TRACKED, tracked, strict=True))
            target = SimpleNamespace(**before)
            applied = apply_event(target, event, now)
            count_event(event.event)
            if applied and event.event == "finish":
                count_retries(event.stats)
            changed = {name: value for name, value in vars(target).items() if value != before[name]}
            if plan is not None:
                changed["pipelines"] = plan
            if shown_pipeline is not None:
                changed["shown_pipeline"] = shown_pipeline
            dataset: dict[str, Any] = {}
            if applied:
                changed["modified"] = dataset["modified"] = now
                if target.state == SUCCEEDED:
                    dataset["last_success"] = now
            if changed:
                writes = statements.event_writes(tx.dialect, tuple(changed), tuple(dataset))
                parameters = {**new_values(dataset), **new_values(changed)}
                for write in writes:
                    tx.send(write, row_id=row_id, dataset_row=dataset_id, **parameters)
            return EventOutcome(
                flow_id(pipeline.owner_id, pipeline.dataset, revision), target.state, applied
            )

    # -- schedules --------------------------------------------------------------------------

    def fire_schedules(self, limit: int = 20) -> list[tuple[RevisionRef, dict[str, Any]]]:
        """Add a ``scheduled`` revision, the same spec as the newest (shared, not copied),
        to each dataset whose schedule is due, and move its next due time on by one
        interval from now (a server that was down does not make up for every interval it
        missed: it runs once).

        Claiming a due time and adding its revision are one transaction, with the dataset
        row locked: whichever server process gets there first fires it, and the others
        find it no longer due. The revisions added, with their specs.
        """
        now = self.clock()
        fired = []
        with self.database.write() as tx:
            due = tx.all(statements.due_datasets(), now=now, limit=limit)
            for dataset_id, owner_id, name, last, seconds, spec, origin in due:
                number = last + 1
                tx.send(
                    statements.update_dataset(("last_revision", "modified", "next_run")),
                    dataset_row=dataset_id,
                    new_last_revision=number,
                    new_modified=now,
                    new_next_run=now + dt.timedelta(seconds=seconds),
                )
                row = tx.first(
                    statements.insert_revision((), False, True),
                    new_dataset_id=dataset_id,
                    new_revision=number,
                    new_spec_from=origin,
                    new_findability=spec["meta"].get("findability", "published"),
                    new_trigger=SCHEDULED,
                    new_created=now,
                )
                assert row is not None  # RETURNING answers the row inserted
                fired.append((RevisionRef(owner_id, name, number, row[0], scheduled=True), spec))
        return fired

    # -- what a stopped process left behind ---------------------------------------------------

    def orphaned(
        self, states: tuple[str, ...], idle_since: dt.datetime, newest_only: bool = False
    ) -> list[RevisionRef]:
        """Revisions in ``states`` (of each dataset's newest revision only, if asked) that
        no live runner holds and that have not changed since ``idle_since``: left behind
        by a process that stopped."""
        return [ref for ref, _ in self.orphaned_since(states, idle_since, newest_only)]

    def orphaned_since(
        self, states: tuple[str, ...], idle_since: dt.datetime, newest_only: bool = False
    ) -> list[tuple[RevisionRef, dt.datetime]]:
        """Like :meth:`orphaned`, with when each revision last changed."""
        assert 0 < len(states) <= 4
        named = {f"state_{index}": states[min(index, len(states) - 1)] for index in range(4)}
        query = statements.orphaned(newest_only)
        rows = self.database.read(
            lambda reader: reader.all(query, idle_since=idle_since, now=self.clock(), **named)
        )
        return [(RevisionRef(*row[:4]), row[4]) for row in rows]

    def oldest_waiting(self) -> dt.datetime | None:
        """When the revision that has waited longest for its engine was handed over."""
        query = statements.oldest_waiting()
        return self.database.read(lambda reader: reader.scalar(query))
