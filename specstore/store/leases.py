"""What the embedded runner asks of the store: its two leases, which keep runs apart
whatever process or machine runs them (see :mod:`specstore.pipelines.runner`).

* A revision's lease: the process that claimed the revision, renewed while it waits or
  runs; one that ran out was left behind by a process that stopped.
* A dataset's run lease: one run of a dataset at a time, and at most ``per_owner`` runs
  of one owner's datasets at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from . import statements
from .database import Database
from .records import RevisionRef, utcnow


class Leases:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    def claim(self, ref: RevisionRef, owner: str, until: dt.datetime) -> bool:
        """Take the lease on an unfinished revision, unless a live runner holds it."""
        with self.database.write() as tx:
            return (
                tx.count(
                    statements.claim(),
                    row_id=ref.row_id,
                    owner=owner,
                    now=self.clock(),
                    new_lease_owner=owner,
                    new_lease_until=until,
                )
                == 1
            )

    def renew(self, refs: list[RevisionRef], owner: str, until: dt.datetime) -> set[int]:
        """Extend the leases ``owner`` holds on ``refs``; the row ids still held."""
        if not refs:
            return set()
        with self.database.write() as tx:
            rows = tx.all(
                statements.renew(),
                row_ids=[ref.row_id for ref in refs],
                owner=owner,
                new_lease_until=until,
            )
        return {row[0] for row in rows}

    def release(self, ref: RevisionRef, owner: str) -> None:
        with self.database.write() as tx:
            tx.send(statements.release(), row_id=ref.row_id, owner=owner)

    def claim_run(
        self, ref: RevisionRef, run: str, until: dt.datetime, per_owner: int = 0
    ) -> tuple[bool, str | None]:
        """Take the run lease of ``ref``'s dataset for ``run``, unless another run holds
        it and renews it, or the owner's other datasets hold ``per_owner`` live run leases
        already (0: no limit). Returns whether it was taken and, when it was taken over
        from a run whose lease ran out, that run's process (``host:pid:start``), which the
        caller makes sure is gone before it runs anything.

        Claims of one owner's runs wait for each other (PostgreSQL: a lock on the owner
        for the transaction; SQLite: the write lock every claim takes), so two processes
        never both take the owner's last place."""
        now = self.clock()
        with self.database.write() as tx:
            row = tx.first(statements.run_lease_of(), row_id=ref.row_id)
            if row is None:
                return False, None
            dataset_id, owner_id, holder, held_until, process = row
            held = holder not in (None, run) and held_until is not None
            if held and held_until >= now:
                return False, None
            if per_owner:
                if tx.dialect == "postgresql":
                    tx.first(statements.lock_owner(), owner_id=owner_id)
                running = tx.scalar(
                    statements.runs_of_owner(), owner_id=owner_id, dataset_row=dataset_id, now=now
                )
                if running >= per_owner:
                    return False, None
            tx.send(
                statements.take_run(),
                dataset_row=dataset_id,
                new_run_owner=run,
                new_run_until=until,
            )
            return True, (process if held else None)

    def note_run_process(self, run: str, process: str) -> None:
        """Record the process that runs the pipeline of the run lease ``run``."""
        with self.database.write() as tx:
            tx.send(statements.note_run_process(), run=run, new_run_process=process)

    def renew_runs(self, runs: list[str], until: dt.datetime) -> set[str]:
        """Extend the run leases ``runs``; those still held."""
        if not runs:
            return set()
        with self.database.write() as tx:
            rows = tx.all(statements.renew_runs(), runs=runs, new_run_until=until)
        return {row[0] for row in rows if row[0]}

    def release_run(self, run: str) -> None:
        with self.database.write() as tx:
            tx.send(statements.release_run(), run=run)
