"""What the announcer asks of the store: revisions that ended put among the announcements
to deliver (an outbox), and the deliveries taken, one process each, and recorded.

A revision's end needs no write of its own to be announced: a revision in a final state
whose ``announced`` is NULL is one to announce, so the state change, once committed, is
the announcement's first record, whichever code path ended it (an event, the sweeper, a
newer revision that superseded it). :meth:`Announcements.queue` then turns it into one
row per receiver, in one transaction with marking it announced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import statements
from .database import Database
from .records import utcnow


@dataclass(frozen=True)
class EndedRevision:
    """A revision that ended, as its announcement tells of it."""

    owner_id: str
    dataset: str
    row_id: int
    revision: int
    state: str
    trigger: str
    errors: list[str]
    stats: dict[str, Any]
    findability: str
    created: dt.datetime
    ended: dt.datetime | None
    modified: dt.datetime


@dataclass(frozen=True)
class Delivery:
    """One announcement taken for delivery by this process."""

    row_id: int
    receiver: str
    body: str
    attempts: int


# An end older than this when an announcer first looks is old news: not announced.
MAX_AGE_SECONDS = 86400.0


class Announcements:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    def queue(
        self,
        receivers: Sequence[str],
        body_of: Callable[[EndedRevision], str],
        limit: int = 100,
    ) -> int:
        """Up to ``limit`` revisions that ended and are not announced yet, each marked
        announced and put among the announcements to deliver, one per receiver (with none,
        only marked): how many. Two processes never both take one (the mark is made only
        where it is not made yet, the row locked)."""
        query = statements.ended_unannounced()
        # Looked for in a read first: most rounds find nothing, and take no write lock.
        ended_ones = self.database.read(lambda reader: reader.all(query, limit=limit))
        if not ended_ones:
            return 0
        now = self.clock()
        queued = 0
        with self.database.write() as tx:
            for row in ended_ones:
                ended = EndedRevision(*row)
                if tx.count(statements.mark_announced(), row_id=ended.row_id, new_announced=now):
                    body = body_of(ended) if receivers else ""
                    for receiver in receivers:
                        tx.send(
                            statements.queue_announcement(),
                            new_revision_row=ended.row_id,
                            new_receiver=receiver,
                            new_body=body,
                            new_created=now,
                            new_attempts=0,
                            new_next_attempt=now,
                        )
                    queued += 1
        return queued

    def mark_stale(self, max_age: float = MAX_AGE_SECONDS) -> None:
        """Mark announced, without an announcement, every revision that ended more than
        ``max_age`` seconds ago and is not announced yet (it ended before any receiver was
        configured: old news), in one statement."""
        now = self.clock()
        with self.database.write() as tx:
            tx.send(
                statements.mark_stale_announced(),
                ended_before=now - dt.timedelta(seconds=max_age),
                new_announced=now,
            )

    def take(self, owner: str, lease_seconds: float, limit: int = 20) -> list[Delivery]:
        """Up to ``limit`` announcements that are due, leased to ``owner`` for
        ``lease_seconds``: no other process delivers them meanwhile."""
        now = self.clock()
        until = now + dt.timedelta(seconds=lease_seconds)
        query = statements.due_announcements()
        due = self.database.read(lambda reader: reader.all(query, now=now, limit=limit))
        taken = []
        if not due:
            return taken
        with self.database.write() as tx:
            for (row_id,) in due:
                row = tx.first(
                    statements.lease_announcement(),
                    row_id=row_id,
                    now=now,
                    new_lease_owner=owner,
                    new_lease_until=until,
                )
                if row is not None:
                    taken.append(Delivery(row_id, *row))
        return taken

    def attempted(
        self,
        delivery: Delivery,
        owner: str,
        error: str | None,
        retry_in: float | None,
    ) -> None:
        """What one attempt came to: delivered (``error`` None), or failed, to be tried
        again in ``retry_in`` seconds (None: given up)."""
        now = self.clock()
        later = now + dt.timedelta(seconds=retry_in) if retry_in is not None else now
        with self.database.write() as tx:
            tx.send(
                statements.announcement_attempted(),
                row_id=delivery.row_id,
                owner=owner,
                new_attempts=delivery.attempts + 1,
                new_last_error=error[:200] if error else None,
                new_next_attempt=later,
                new_delivered=now if error is None else None,
                new_given_up=now if error is not None and retry_in is None else None,
            )

    def waiting(self) -> tuple[int, dt.datetime | None]:
        """How many announcements wait for delivery, and when the oldest was made."""
        query = statements.announcements_waiting()
        count, oldest = self.database.read(lambda reader: tuple(reader.first(query)))
        return int(count), oldest
