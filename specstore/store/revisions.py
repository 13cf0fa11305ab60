"""What the API asks of the store: a spec stored as its dataset's next revision, and
revisions and datasets read back, each read one indexed statement of only the columns
its answer shows."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import InvalidSpec, NotFound
from ..schedules import schedule_seconds
from . import statements
from .database import Database
from .ledger import handed_over, handover_values, new_values, supersede_parameters, supersedes
from .records import (
    PUBLISHED,
    UNSTORED,
    UPLOAD,
    DatasetPage,
    DatasetRevision,
    Handover,
    ListedDataset,
    MissingRevision,
    RevisionRef,
    RevisionSummary,
    pipeline_id,
    utcnow,
)
from .sql import Row, Transaction, labels


class Upload:
    """One upload's unit of work, in one transaction: the dataset's row written (and
    locked), so its new revision's number is known (:attr:`ref`, whose row id is not,
    yet); then, when the block ends, the revision stored as what :meth:`record` was
    given leaves it (None, or nothing: LOADED), and :attr:`stored` names it."""

    def __init__(
        self,
        tx: Transaction,
        dataset_id: int,
        ref: RevisionRef,
        spec: dict[str, Any],
        now: dt.datetime,
    ) -> None:
        self.ref = ref
        self.stored: RevisionRef | None = None
        self._tx, self._dataset_id, self._spec, self._now = tx, dataset_id, spec, now
        self._handover: Handover | None = None

    def record(self, handover: Handover | None) -> None:
        """What the engine made of the revision (see :class:`Handover`)."""
        self._handover = handover

    def _insert(self) -> Callable[[], Row | None]:
        tx, handover, number = self._tx, self._handover, self.ref.revision
        values = handover_values(handover, self._now) if handover is not None else {}
        # Where writes go in CTEs, the older revisions waiting end in the same statement.
        superseding = (
            handover is not None and tx.dialect == "postgresql" and supersedes(handover, number)
        )
        inserted = tx.later(
            statements.insert_revision(tuple(values), superseding, False),
            **(supersede_parameters(self._dataset_id, number, self._now) if superseding else {}),
            new_dataset_id=self._dataset_id,
            new_revision=number,
            new_spec=self._spec,
            new_findability=self._spec["meta"].get("findability", PUBLISHED),
            new_trigger=UPLOAD,
            new_created=self._now,
            **new_values(values),
        )
        if handover is not None:
            handed_over(tx, self._dataset_id, number, handover, self._now, superseding)
        return inserted


class Revisions:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    @contextlib.contextmanager
    def upload(self, spec: dict[str, Any], schedules_per_owner: int = 0) -> Iterator[Upload]:
        """Store ``spec`` (already validated) as its dataset's next revision (see
        :class:`Upload`).

        The dataset row is created with its counter at 1, or its counter bumped by one,
        by a single ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: concurrent uploads
        of one dataset wait on that row and each gets the next number, with no gaps and
        no duplicates. The dataset's schedule becomes the spec's (due one interval from
        now), or none; a spec with a schedule, of an owner with ``schedules_per_owner``
        other datasets that have one (0: no limit), is refused (:class:`InvalidSpec`).
        The transaction is pipelined: the BEGIN goes out with the dataset's row, the
        COMMIT with the revision's, two round trips in all.
        """
        meta = spec["meta"]
        owner_id, name = meta["ownerid"], meta["dataset"]
        seconds = schedule_seconds(spec.get("schedule"))
        now = self.clock()
        with self.database.write(pipelined=True) as tx:
            if seconds and schedules_per_owner:
                scheduled = tx.scalar(statements.scheduled_datasets(), owner_id=owner_id, name=name)
                if scheduled >= schedules_per_owner:
                    raise InvalidSpec(
                        f"schedule: {owner_id} has {schedules_per_owner} datasets with a "
                        "schedule already, the most this server runs for one owner "
                        "(SCHEDULES_PER_OWNER): upload one of them without its schedule first"
                    )
            dataset_id, number = tx.first(
                statements.upsert_dataset(tx.dialect),
                new_owner_id=owner_id,
                new_name=name,
                new_findability=meta.get("findability", PUBLISHED),
                new_created=now,
                new_modified=now,
                new_schedule_seconds=seconds,
                new_next_run=now + dt.timedelta(seconds=seconds) if seconds else None,
            )
            upload = Upload(
                tx, dataset_id, RevisionRef(owner_id, name, number, UNSTORED), spec, now
            )
            yield upload
            inserted = upload._insert()
        row = inserted()
        assert row is not None  # RETURNING answers the row inserted
        upload.stored = RevisionRef(owner_id, name, number, row[0])

    def revision(
        self, owner_id: str, name: str, which: str | int = "latest", view: str = "page"
    ) -> DatasetRevision:
        """One revision: a number, ``latest``, or ``successful`` (the newest that
        succeeded), with only the columns ``view`` answers with (see
        ``statements.VIEWS``). :class:`NotFound` without the dataset,
        :class:`MissingRevision` with it but not the revision."""
        kind = which if which in ("latest", "successful") else "number"
        query = statements.revision(kind, view)
        row = self.database.read(
            lambda reader: reader.first(
                query,
                owner_id=owner_id,
                name=name,
                number=which,
                main_id=pipeline_id(owner_id, name),
            )
        )
        if row is None:
            raise NotFound(f"no dataset {owner_id}/{name}")
        found = DatasetRevision.from_row(row, labels(query))
        if found.revision.revision is None:
            raise MissingRevision(f"no revision {which} of {owner_id}/{name}", found.dataset)
        return found

    def list_datasets(
        self, owner_id: str | None, include_hidden: bool, limit: int, offset: int
    ) -> DatasetPage:
        """The owner's datasets (everyone's when ``owner_id`` is None), most recently
        changed first, with their newest revision; paged in SQL."""
        page, count = statements.listing(owner_id is not None, include_hidden)
        parameters = {
            "owner_id": owner_id,
            "published": PUBLISHED,
            "limit": limit,
            "offset": offset,
        }
        total_at = labels(page).index("total")
        listed = len(ListedDataset._fields)

        def read(reader: Any) -> DatasetPage:
            rows = reader.all(page, **parameters)
            # The total comes with the page; past the last page, ask for it.
            total = rows[0][total_at] if rows else reader.scalar(count, **parameters)
            return DatasetPage([ListedDataset._make(row[:listed]) for row in rows], total or 0)

        return self.database.read(read)

    def revisions(self, owner_id: str, name: str, limit: int = 50) -> list[RevisionSummary]:
        """A dataset's revisions, newest first."""
        query = statements.revisions_of()
        rows = self.database.read(
            lambda reader: reader.all(query, owner_id=owner_id, name=name, limit=limit)
        )
        return [RevisionSummary(*row) for row in rows]

    def count_by_state(self) -> dict[str, int]:
        """How many revisions are in each state."""
        query = statements.revisions_by_state()
        return dict(self.database.read(lambda reader: [tuple(row) for row in reader.all(query)]))
