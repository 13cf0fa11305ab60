"""The registry: storing revisions, applying events, and reading them back.

Every method is one transaction. Nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .db import Database, every, execute, first, first_after_commit, labels
from .errors import InvalidSpec, NotFound
from .events import (
    FAILED,
    FINAL_STATES,
    LOADED,
    QUEUE,
    REGISTERED,
    SUCCEEDED,
    PipelineEvent,
    apply_event,
    end_run,
)
from .metrics import count_event
from .models import Dataset, Revision
from .schedules import schedule_seconds

PUBLISHED, UNLISTED, PRIVATE = "published", "unlisted", "private"
# What made a revision.
UPLOAD, SCHEDULED = "upload", "scheduled"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def flow_id(owner_id: str, dataset: str, revision: int) -> str:
    return f"{owner_id}/{dataset}/{revision}"


def pipeline_id(owner_id: str, dataset: str) -> str:
    """The dataset's main pipeline's id: its key in a revision's ``pipelines``."""
    return f"{owner_id}/{dataset}"


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
class Handover:
    """What an engine made of a revision when it took it: the state it is in now
    (REGISTERED: queued to run; INVALID or FAILED: it cannot run, ``errors`` say why), the
    pipelines planned for it, the lease of the runner that holds it, whether the older
    revisions still waiting are superseded by it, and how to take back what the engine
    wrote outside the database, should the transaction that records it fail."""

    state: str = REGISTERED
    pipelines: dict[str, Any] | None = None
    errors: tuple[str, ...] = ()
    lease: tuple[str, dt.datetime] | None = None
    supersedes: bool = False
    undo: Callable[[], None] | None = None


# An engine's first look at a new revision, inside the transaction that stores it; None:
# the engine takes it later, outside (it needs the network, say). It comes before the
# revision's row is written (the row is written once, as the handover leaves it), so the
# ref it is given has no row id yet: UNSTORED.
UNSTORED = 0
Prepare = Callable[[RevisionRef, dict[str, Any]], Handover | None]


class MissingRevision(NotFound):
    """The dataset is there, the revision asked for is not; ``dataset``: the dataset's
    columns as read."""

    def __init__(self, message: str, dataset: SimpleNamespace) -> None:
        super().__init__(message)
        self.dataset = dataset


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


DATASET_COLUMNS = (
    "id",
    "owner_id",
    "name",
    "last_revision",
    "findability",
    "created",
    "modified",
    "last_success",
)
REVISION_COLUMNS = (
    "id",
    "revision",
    "findability",
    "trigger",
    "state",
    "success",
    "logs",
    "errors",
    "stats",
    "created",
    "modified",
    "queued",
    "started",
    "ended",
)
# The spec, read as the JSON text the database keeps: the answers that show it send that
# text as it is (see ``representations.with_members``), neither decoded nor encoded again.
SPEC_TEXT = "spec_text"
# The spec without what its input carries (the data package and the resource mapping,
# which ``spec_text`` holds): how ``info`` shows it as its ``source``, so that a large
# spec is not sent twice.
SOURCE_TEXT = "source_text"
# The dataset's main pipeline (see ``pipeline_id``), read as JSON text too: ``info``
# shows it cleaned in the text (see ``Reports.json_text``).
MAIN_PIPELINE_TEXT = "main_pipeline_text"
REVISION_DOCUMENTS = (SPEC_TEXT, "pipelines")
# What an event reads of a revision: its row id and number, then what an event may change.
_TRACKED = (
    "id",
    "revision",
    "state",
    "success",
    "logs",
    "errors",
    "stats",
    "queued",
    "started",
    "ended",
)
# What each kind of answer reads of a dataset and of its revision: nothing more.
DATASET_KEY = ("owner_id", "name", "findability")
VIEWS = {
    "status": (
        DATASET_KEY,
        ("revision", "findability", "trigger", "state", "errors", "logs", "modified", "stats"),
    ),
    "revision": (
        DATASET_KEY,
        (
            "revision",
            "findability",
            "trigger",
            "state",
            SPEC_TEXT,
            "created",
            "modified",
            "errors",
            "stats",
        ),
    ),
    # Every column of the revision but its row id, the spec and main pipeline as text.
    "info": (
        (*DATASET_KEY, "last_success"),
        (*REVISION_COLUMNS[1:], SPEC_TEXT, SOURCE_TEXT, MAIN_PIPELINE_TEXT),
    ),
    "full": (DATASET_COLUMNS, REVISION_COLUMNS + REVISION_DOCUMENTS),
}
# The listing's columns, in ListedDataset's order: the datasets', then the revisions'.
LISTED_DATASET = ListedDataset._fields[:3]
LISTED_REVISION = ListedDataset._fields[3:]


def _spec(revisions: Any) -> Any:
    """A revision's spec: its own, else (a scheduled revision) that of the revision it
    repeats, read only then."""
    origin = Revision.__table__.alias("origin")
    shared = (
        select(origin.c.spec)
        .where(
            origin.c.dataset_id == revisions.c.dataset_id,
            origin.c.revision == revisions.c.spec_from,
        )
        .scalar_subquery()
    )
    return func.coalesce(revisions.c.spec, shared, type_=revisions.c.spec.type)


class WithoutInputParameters(FunctionElement[str]):
    """A spec document as JSON text, without its input's ``parameters``."""

    type = Text()
    inherit_cache = True


@compiles(WithoutInputParameters, "postgresql")
def _without_parameters_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    spec = compiler.process(element.clauses, **kw)
    return f"CAST(({spec} #- '{{inputs,0,parameters}}') AS TEXT)"


@compiles(WithoutInputParameters, "sqlite")
def _without_parameters_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    spec = compiler.process(element.clauses, **kw)
    return f"json_remove({spec}, '$.inputs[0].parameters')"


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


def _labelled(model: type[Dataset] | type[Revision], names: tuple[str, ...]) -> list[Any]:
    table = model.__table__
    return [_column(table, name).label(f"{table.name}.{name}") for name in names]


def _column(table: Any, name: str) -> Any:
    if name == SPEC_TEXT:
        return cast(_spec(table), Text)
    if name == SOURCE_TEXT:
        return WithoutInputParameters(_spec(table))
    if name == MAIN_PIPELINE_TEXT:
        # The key bound as ``main_id`` (see Registry.revision); the index's own type makes
        # it a JSON path on SQLite. No such pipeline: NULL (PostgreSQL), 'null' (SQLite).
        key = bindparam("main_id", type_=JSON.JSONIndexType())
        return cast(table.c.pipelines[key], Text)
    return table.c[name]


@functools.cache
def _listing_queries(by_owner: bool, include_hidden: bool) -> tuple[Select[Any], Select[Any]]:
    """A page of datasets with their newest revision's state (and how many datasets in
    all, in the same statement), and the count alone: built once, parameters bound later.

    The total is a subquery over the datasets alone, not a window over the page's join:
    PostgreSQL then joins the revisions of the page's rows only, not of all the owner's
    datasets (about 50 µs less per listing of 50 of 100)."""

    def visible(datasets: Any) -> list[Any]:
        found = [datasets.c.owner_id == bindparam("owner_id")] if by_owner else []
        if not include_hidden:
            found.append(datasets.c.findability == bindparam("published"))
        return found

    def count(datasets: Any) -> Select[Any]:
        return select(func.count().label("total")).select_from(datasets).where(*visible(datasets))

    counted = Dataset.__table__.alias("counted")
    page = (
        select(
            *_labelled(Dataset, LISTED_DATASET),
            *_labelled(Revision, LISTED_REVISION),
            count(counted).scalar_subquery().label("total"),
        )
        .join(
            Revision,
            (Revision.dataset_id == Dataset.id) & (Revision.revision == Dataset.last_revision),
        )
        .where(*visible(Dataset.__table__))
        .order_by(Dataset.modified.desc(), Dataset.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return page, count(Dataset.__table__)


@functools.cache
def _last_revision_query() -> Select[Any]:
    return select(Dataset.last_revision).where(
        Dataset.owner_id == bindparam("owner_id"), Dataset.name == bindparam("name")
    )


@functools.cache
def _findability_query() -> Select[Any]:
    return select(Dataset.findability).where(
        Dataset.owner_id == bindparam("owner_id"), Dataset.name == bindparam("name")
    )


@functools.cache
def _revision_query(kind: str, view: str) -> Select[Any]:
    """The statement that reads one revision, built once per kind and view: its
    parameters are bound at execution, so SQLAlchemy compiles it once per process too.

    A numbered or the successful revision is joined to its dataset from the outside: a
    dataset without it is a row whose revision's columns are all NULL, so that one
    statement tells a missing revision from a missing dataset (the newest revision is
    there whenever its dataset is)."""
    dataset_columns, revision_columns = VIEWS[view]
    query = select(
        *_labelled(Dataset, dataset_columns), *_labelled(Revision, revision_columns)
    ).where(Dataset.owner_id == bindparam("owner_id"), Dataset.name == bindparam("name"))
    of_dataset = Revision.dataset_id == Dataset.id
    if kind == "latest":
        return query.join(Revision, of_dataset & (Revision.revision == Dataset.last_revision))
    if kind == "successful":
        succeeded = of_dataset & (Revision.state == SUCCEEDED)
        return query.outerjoin(Revision, succeeded).order_by(Revision.revision.desc()).limit(1)
    numbered = of_dataset & (Revision.revision == bindparam("number"))
    return query.outerjoin(Revision, numbered)


# The statements of the write paths are built once, their values bound at execution:
# SQLAlchemy neither builds nor keys them again on every upload.


def _bound(table: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``{column: bindparam}`` for ``names``, each parameter ``v_<column>``, of its type."""
    return {name: bindparam(f"v_{name}", type_=table.c[name].type) for name in names}


@functools.cache
def _upsert_dataset(dialect: str) -> Any:
    """A new dataset with its counter at 1, or the counter bumped by one (and the
    dataset's findability and schedule the new revision's); its id and the counter."""
    datasets = Dataset.__table__
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(datasets)
    columns = ("owner_id", "name", "findability", "created", "modified")
    columns += ("schedule_seconds", "next_run")
    return (
        insert.values(last_revision=1, **_bound(datasets, columns))
        .on_conflict_do_update(
            index_elements=["owner_id", "name"],
            set_={
                "last_revision": datasets.c.last_revision + 1,
                "findability": insert.excluded.findability,
                "modified": insert.excluded.modified,
                "schedule_seconds": insert.excluded.schedule_seconds,
                "next_run": insert.excluded.next_run,
            },
        )
        .returning(datasets.c.id, datasets.c.last_revision)
    )


@functools.cache
def _insert_revision_statement(
    handed_over: tuple[str, ...] = (), superseding: bool = False, shared: bool = False
) -> Any:
    """A new revision: LOADED, or with the columns its engine's handover sets; when
    ``superseding`` (PostgreSQL only), the older revisions still waiting are ended in the
    same statement (a CTE), one round trip fewer. A ``shared`` one stores no spec: it
    has another revision's (``spec_from``)."""
    revisions = Revision.__table__
    spec = "spec_from" if shared else "spec"
    columns = ("dataset_id", "revision", spec, "findability", "trigger", "created")
    values: dict[str, Any] = {"state": LOADED, "logs": [], "errors": [], "stats": {}}
    values["modified"] = bindparam("v_created", type_=revisions.c.created.type)
    values.update(_bound(revisions, columns + handed_over))
    statement = revisions.insert().values(**values).returning(revisions.c.id)
    if superseding:
        statement = statement.add_cte(_supersede_statement().cte("superseded"))
    return statement


def _insert_revision(
    connection: Connection,
    dataset_id: int,
    number: int,
    spec: dict[str, Any],
    trigger: str,
    now: dt.datetime,
    handover: Handover | None = None,
    superseding: bool = False,
    spec_from: int | None = None,
) -> Callable[[], int]:
    """Insert revision ``number`` of a dataset, LOADED or as ``handover`` says, and, when
    ``superseding``, end the older ones still waiting; what answers its row id once the
    transaction has ended (in a pipelined one, the insert goes out with the COMMIT).
    With ``spec_from``, it has that revision's spec, ``spec``, rather than a copy."""
    handed_over = _handover_values(handover, now) if handover is not None else {}
    superseded = _supersede_parameters(dataset_id, number, now) if superseding else {}
    shared = spec_from is not None
    inserted = first_after_commit(
        connection,
        _insert_revision_statement(tuple(handed_over), superseding, shared),
        {
            **superseded,
            "v_dataset_id": dataset_id,
            "v_revision": number,
            **({"v_spec_from": spec_from} if shared else {"v_spec": spec}),
            "v_findability": spec["meta"].get("findability", PUBLISHED),
            "v_trigger": trigger,
            "v_created": now,
            **{f"v_{name}": value for name, value in handed_over.items()},
        },
    )

    def row_id() -> int:
        row = inserted()
        assert row is not None  # RETURNING answers the row inserted
        return row[0]

    return row_id


@functools.cache
def _handover_statement(columns: tuple[str, ...], from_state: str) -> Any:
    revisions = Revision.__table__
    return (
        update(revisions)
        .where(revisions.c.id == bindparam("row_id"), revisions.c.state == from_state)
        .values(**_bound(revisions, columns))
    )


def _handover_values(handover: Handover, now: dt.datetime) -> dict[str, Any]:
    """The revision's columns as ``handover`` leaves it."""
    values: dict[str, Any] = {"state": handover.state, "modified": now}
    if handover.pipelines is not None:
        values["pipelines"] = handover.pipelines
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


def _record_handover(
    connection: Connection,
    dataset_id: int,
    ref: RevisionRef,
    handover: Handover,
    now: dt.datetime,
    from_state: str,
) -> bool:
    """Move revision ``ref`` on from ``from_state`` as ``handover`` says, and the dataset's
    last change to now; False when it was not in that state (nothing changes)."""
    values = _handover_values(handover, now)
    statement = _handover_statement(tuple(values), from_state)
    parameters = {f"v_{name}": value for name, value in values.items()}
    moved = connection.execute(statement, {"row_id": ref.row_id, **parameters}).rowcount
    if not moved:
        return False
    _handed_over(connection, dataset_id, ref.revision, handover, now)
    connection.execute(
        _dataset_update_statement(("v_modified",)),
        {"d_id": dataset_id, "v_modified": now},
    )
    return True


def _supersedes(handover: Handover, revision: int) -> bool:
    """Whether ``handover`` of ``revision`` ends the older revisions still waiting."""
    return handover.state == REGISTERED and handover.supersedes and revision > 1


def _handed_over(
    connection: Connection,
    dataset_id: int,
    revision: int,
    handover: Handover,
    now: dt.datetime,
    superseded: bool = False,
) -> None:
    """What follows the handover of a dataset's ``revision``: queued, it supersedes the
    older ones waiting (unless the statement that stored it did, ``superseded``)."""
    if handover.state == REGISTERED:
        count_event(QUEUE)
    if _supersedes(handover, revision) and not superseded:
        _supersede_waiting(connection, dataset_id, revision, now)


@functools.cache
def _event_target_statement(by_number: bool) -> Select[Any]:
    """The dataset's id and what an event may change of one of its revisions (the one
    numbered ``number``, or the newest), both rows locked."""
    datasets, revisions = Dataset.__table__, Revision.__table__
    number = bindparam("number") if by_number else datasets.c.last_revision
    return (
        select(datasets.c.id, *(revisions.c[name] for name in _TRACKED))
        .join(
            revisions,
            and_(revisions.c.dataset_id == datasets.c.id, revisions.c.revision == number),
        )
        .where(datasets.c.owner_id == bindparam("owner_id"), datasets.c.name == bindparam("name"))
        .with_for_update()
    )


@functools.cache
def _revision_update_statement(columns: tuple[str, ...]) -> Any:
    revisions = Revision.__table__
    return (
        update(revisions)
        .where(revisions.c.id == bindparam("row_id"))
        .values(**_bound(revisions, columns))
    )


@functools.cache
def _dataset_update_statement(parameters: tuple[str, ...]) -> Any:
    datasets = Dataset.__table__
    columns = tuple(name.removeprefix("v_") for name in parameters)
    return (
        update(datasets)
        .where(datasets.c.id == bindparam("d_id"))
        .values(**_bound(datasets, columns))
    )


def _writes_in_ctes(dialect: str) -> bool:
    """Whether the database takes a write as a CTE of another (PostgreSQL does, SQLite does
    not): two writes of one transaction then cost one round trip."""
    return dialect == "postgresql"


@functools.cache
def _event_writes(dialect: str, columns: tuple[str, ...], dataset: tuple[str, ...]) -> tuple:
    """What an event writes: the revision's ``columns`` and, when the event changed the
    revision's story, the dataset's last change (``dataset``, parameter names); one
    statement where writes go in CTEs (the dataset's update a CTE of the revision's),
    elsewhere two."""
    revision = _revision_update_statement(columns)
    if not dataset:
        return (revision,)
    touched = _dataset_update_statement(dataset)
    if _writes_in_ctes(dialect):
        return (revision.add_cte(touched.cte("dataset_touched")),)
    return (revision, touched)


@functools.cache
def _supersede_statement() -> Any:
    revisions = Revision.__table__
    now = bindparam("w_now", type_=revisions.c.ended.type)
    return (
        update(revisions)
        .where(
            revisions.c.dataset_id == bindparam("w_dataset_id"),
            revisions.c.revision < bindparam("w_revision"),
            # Not IN (...): a list is rendered at execution, and the statement could not
            # be compiled once for the driver (db.first).
            or_(revisions.c.state == LOADED, revisions.c.state == REGISTERED),
        )
        .values(
            state=FAILED,
            success=False,
            errors=bindparam("w_errors", type_=revisions.c.errors.type),
            started=func.coalesce(revisions.c.started, now),
            ended=now,
            modified=now,
        )
    )


def _supersede_waiting(
    connection: Connection, dataset_id: int, revision: int, now: dt.datetime
) -> int:
    """End the dataset's revisions older than ``revision`` still waiting to run (LOADED or
    REGISTERED): FAILED, superseded. How many were ended."""
    parameters = _supersede_parameters(dataset_id, revision, now)
    return connection.execute(_supersede_statement(), parameters).rowcount


def _supersede_parameters(dataset_id: int, revision: int, now: dt.datetime) -> dict[str, Any]:
    return {
        "w_dataset_id": dataset_id,
        "w_revision": revision,
        "w_errors": [f"superseded by revision {revision} before it ran"],
        "w_now": now,
    }


@functools.cache
def _scheduled_datasets_query() -> Select[Any]:
    return (
        select(func.count())
        .select_from(Dataset)
        .where(
            Dataset.owner_id == bindparam("owner_id"),
            Dataset.schedule_seconds.is_not(None),
            Dataset.name != bindparam("name"),
        )
    )


def _check_schedules(connection: Connection, owner_id: str, name: str, limit: int) -> None:
    """Refuse a schedule for ``name`` when the owner's other datasets have ``limit``."""
    (scheduled,) = first(
        connection, _scheduled_datasets_query(), {"owner_id": owner_id, "name": name}
    ) or (0,)
    if scheduled >= limit:
        raise InvalidSpec(
            f"schedule: {owner_id} has {limit} datasets with a schedule already, the most "
            "this server runs for one owner (SCHEDULES_PER_OWNER): upload one of them "
            "without its schedule first"
        )


class Registry:
    def __init__(self, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.database = database
        self.clock = clock

    def register_revision(
        self, spec: dict[str, Any], prepare: Prepare | None = None, schedules_per_owner: int = 0
    ) -> tuple[RevisionRef, Handover | None]:
        """Store ``spec`` (already validated) as its dataset's next revision, an upload,
        and let the engine take it (``prepare``), all in one transaction.

        The dataset row is created with its counter at 1, or its counter bumped by
        one, by a single ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: concurrent
        uploads of one dataset wait on that row and each gets the next number, with no
        gaps and no duplicates. The dataset's schedule becomes the spec's (due one
        interval from now), or none. ``prepare`` runs with the row locked; the revision's
        row is then inserted once, as what it hands back (see :class:`Handover`) leaves it,
        in the same transaction, and its ``undo`` is called if that transaction fails.
        The transaction is pipelined (:meth:`Database.pipelined`): the BEGIN goes out with
        the dataset's row, the COMMIT with the revision's, two round trips in all.
        The revision, and the engine's handover (None: the revision is LOADED, for the
        engine to take later). A spec with a schedule, of an owner with
        ``schedules_per_owner`` other datasets that have one (0: no limit), is refused
        (:class:`InvalidSpec`), in the same transaction.
        """
        meta = spec["meta"]
        owner_id, name = meta["ownerid"], meta["dataset"]
        findability = meta.get("findability", PUBLISHED)
        seconds = schedule_seconds(spec.get("schedule"))
        now = self.clock()
        next_run = now + dt.timedelta(seconds=seconds) if seconds else None
        handover = None
        try:
            with self.database.pipelined() as connection:
                if seconds and schedules_per_owner:
                    _check_schedules(connection, owner_id, name, schedules_per_owner)
                dataset_id, number = first(
                    connection,
                    _upsert_dataset(connection.dialect.name),
                    {
                        "v_owner_id": owner_id,
                        "v_name": name,
                        "v_findability": findability,
                        "v_created": now,
                        "v_modified": now,
                        "v_schedule_seconds": seconds,
                        "v_next_run": next_run,
                    },
                )
                if prepare is not None:
                    handover = prepare(RevisionRef(owner_id, name, number, UNSTORED), spec)
                superseding = (
                    handover is not None
                    and _writes_in_ctes(connection.dialect.name)
                    and _supersedes(handover, number)
                )
                row_id = _insert_revision(
                    connection, dataset_id, number, spec, UPLOAD, now, handover, superseding
                )
                if handover is not None:
                    _handed_over(connection, dataset_id, number, handover, now, superseding)
            ref = RevisionRef(owner_id, name, number, row_id())
        except BaseException:
            if handover is not None and handover.undo is not None:
                handover.undo()
            raise
        return ref, handover

    def hand_over(self, ref: RevisionRef, handover: Handover, again: bool = False) -> bool:
        """Record what the engine made of a LOADED revision it took (see :class:`Handover`),
        or, ``again``, of a REGISTERED one it took a second time, in one transaction; False
        (nothing recorded) when it is in that state no more."""
        now = self.clock()
        with self.database.writing() as connection:
            dataset_id = connection.scalar(
                select(Revision.dataset_id).where(Revision.id == ref.row_id)
            )
            return dataset_id is not None and _record_handover(
                connection, dataset_id, ref, handover, now, REGISTERED if again else LOADED
            )

    def fire_schedules(self, limit: int = 20) -> list[tuple[RevisionRef, dict[str, Any]]]:
        """Add a ``scheduled`` revision, the same spec as the newest, to each dataset whose
        schedule is due, and move its next due time on by one interval from now (a server
        that was down does not make up for every interval it missed: it runs once).

        Claiming a due time and adding its revision are one transaction, with the dataset
        row locked: whichever server process gets there first fires it, and the others
        find it no longer due. The revisions added, with their specs.
        """
        now = self.clock()
        datasets, revisions = Dataset.__table__, Revision.__table__
        fired = []
        with self.database.transaction(write=True) as session:
            due = session.execute(
                select(
                    datasets.c.id,
                    datasets.c.owner_id,
                    datasets.c.name,
                    datasets.c.last_revision,
                    datasets.c.schedule_seconds,
                )
                .where(datasets.c.next_run <= now)
                .order_by(datasets.c.next_run)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for dataset_id, owner_id, name, last, seconds in due:
                spec, spec_from = session.execute(
                    select(_spec(revisions), func.coalesce(revisions.c.spec_from, last)).where(
                        revisions.c.dataset_id == dataset_id, revisions.c.revision == last
                    )
                ).one()
                number = last + 1
                session.execute(
                    update(datasets)
                    .where(datasets.c.id == dataset_id)
                    .values(
                        last_revision=number,
                        modified=now,
                        next_run=now + dt.timedelta(seconds=seconds),
                    )
                )
                row_id = _insert_revision(
                    session.connection(),
                    dataset_id,
                    number,
                    spec,
                    SCHEDULED,
                    now,
                    spec_from=spec_from,
                )()
                fired.append((RevisionRef(owner_id, name, number, row_id), spec))
        return fired

    def apply_event(self, event: PipelineEvent, plan: dict[str, Any] | None = None) -> EventOutcome:
        """Record an engine event on the revision it is for (the newest by default), and,
        when an engine starts a revision it planned only then, its plan (``plan``).

        One transaction, pipelined (two round trips): both rows read and locked in one
        statement (only the columns an event changes: the spec and the plan stay in the
        database), then the columns that changed written back.
        """
        pipeline = event.pipeline
        now = self.clock()
        named = {"owner_id": pipeline.owner_id, "name": pipeline.dataset}
        with self.database.pipelined() as connection:
            row = first(
                connection,
                _event_target_statement(event.revision is not None),
                {**named, "number": event.revision},
            )
            if row is None:
                last = first(connection, _last_revision_query(), named)
                newest = None if last is None else last[0]
                if newest is None:
                    raise NotFound(f"unknown pipeline {str(pipeline)!r}")
                missing = event.revision or newest
                raise NotFound(f"pipeline {str(pipeline)!r} has no revision {missing}")
            dataset_id, row_id, revision, *tracked = row
            before = dict(zip(_TRACKED[2:], tracked, strict=True))
            target = SimpleNamespace(**before)
            applied = apply_event(target, event, now)
            count_event(event.event)
            changed = {name: value for name, value in vars(target).items() if value != before[name]}
            if plan is not None:
                changed["pipelines"] = plan
            if applied:
                changed["modified"] = now
            dataset_changes = {}
            if applied:
                dataset_changes["v_modified"] = now
                if target.state == SUCCEEDED:
                    dataset_changes["v_last_success"] = now
            if changed:
                parameters = {f"v_{name}": value for name, value in changed.items()}
                parameters.update(dataset_changes, row_id=row_id, d_id=dataset_id)
                writes = _event_writes(
                    connection.dialect.name, tuple(changed), tuple(dataset_changes)
                )
                for statement in writes:
                    execute(connection, statement, parameters)
            return EventOutcome(
                flow_id(pipeline.owner_id, pipeline.dataset, revision), target.state, applied
            )

    def revision(
        self, owner_id: str, name: str, which: str | int = "latest", view: str = "full"
    ) -> DatasetRevision:
        """One revision: a number, ``latest``, or ``successful`` (the newest that succeeded).

        One indexed query that selects only the columns the ``view`` answers with
        (``status``, ``revision``, ``info`` or ``full``, see ``VIEWS``).
        """
        kind = which if which in ("latest", "successful") else "number"
        parameters = {
            "owner_id": owner_id,
            "name": name,
            "number": which,
            "main_id": pipeline_id(owner_id, name),
        }
        query = _revision_query(kind, view)
        row = self.database.read(lambda connection: first(connection, query, parameters))
        if row is None:
            raise NotFound(f"no dataset {owner_id}/{name}")
        found = DatasetRevision.from_row(row, labels(query))
        if found.revision.revision is None:
            raise MissingRevision(f"no revision {which} of {owner_id}/{name}", found.dataset)
        return found

    def findability(self, owner_id: str, name: str) -> str | None:
        """Who may see the dataset (its newest revision's findability); None: no dataset."""
        query = _findability_query()
        parameters = {"owner_id": owner_id, "name": name}
        return self.database.read(lambda connection: connection.scalar(query, parameters))

    def list_datasets(
        self, owner_id: str | None, include_hidden: bool, limit: int, offset: int
    ) -> DatasetPage:
        """The owner's datasets (everyone's when ``owner_id`` is None), most recently
        changed first, with their newest revision; paged in SQL."""
        page, count = _listing_queries(owner_id is not None, include_hidden)
        parameters = {
            "owner_id": owner_id,
            "published": PUBLISHED,
            "limit": limit,
            "offset": offset,
        }

        names = labels(page)
        total_at = names.index("total")

        def read(connection: Connection) -> DatasetPage:
            rows = every(connection, page, parameters)
            # The window count comes with the page; past the last page, ask for it.
            total = rows[0][total_at] if rows else connection.scalar(count, parameters)
            listed = len(ListedDataset._fields)
            return DatasetPage([ListedDataset._make(row[:listed]) for row in rows], total or 0)

        return self.database.read(read)

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
        revisions = Revision.__table__
        query = select(_spec(revisions)).where(revisions.c.id == ref.row_id)
        return self.database.read(lambda connection: connection.scalar(query))

    def superseded_by(self, ref: RevisionRef) -> int | None:
        """The dataset's newest revision number if it is newer than ``ref``, else None."""
        with self.database.transaction() as session:
            newest = session.scalar(
                select(Dataset.last_revision)
                .join(Revision, Revision.dataset_id == Dataset.id)
                .where(Revision.id == ref.row_id)
            )
        return None if newest == ref.revision else newest

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

    def renew(self, refs: list[RevisionRef], owner: str, until: dt.datetime) -> set[int]:
        """Extend the leases ``owner`` holds on ``refs``; the row ids still held."""
        if not refs:
            return set()
        with self.database.transaction(write=True) as session:
            renewed = session.scalars(
                update(Revision)
                .where(Revision.id.in_([ref.row_id for ref in refs]), Revision.lease_owner == owner)
                .values(lease_until=until)
                .returning(Revision.id)
            )
            return set(renewed)

    # -- one run of a dataset at a time ----------------------------------------------------

    def claim_run(
        self, ref: RevisionRef, run: str, until: dt.datetime, per_owner: int = 0
    ) -> tuple[bool, str | None]:
        """Take the run lease of ``ref``'s dataset for ``run``, unless another run holds
        it and renews it, or the owner's other datasets hold ``per_owner`` live run leases
        already (0: no limit), whichever process or machine holds them. Returns whether it
        was taken and, when it was taken over from a run whose lease ran out, that run's
        process (``host:pid:start``), which the caller makes sure is gone before it runs
        anything."""
        now = self.clock()
        with self.database.transaction(write=True) as session:
            row = session.execute(
                select(
                    Dataset.id,
                    Dataset.owner_id,
                    Dataset.run_owner,
                    Dataset.run_until,
                    Dataset.run_process,
                )
                .join(Revision, Revision.dataset_id == Dataset.id)
                .where(Revision.id == ref.row_id)
                .with_for_update(of=Dataset)
            ).one_or_none()
            if row is None:
                return False, None
            held = row.run_owner not in (None, run) and row.run_until is not None
            if held and row.run_until >= now:
                return False, None
            if per_owner and self._runs_of(session, row.owner_id, row.id, now) >= per_owner:
                return False, None
            session.execute(
                update(Dataset)
                .where(Dataset.id == row.id)
                .values(run_owner=run, run_until=until, run_process=None)
            )
            return True, (row.run_process if held else None)

    @staticmethod
    def _runs_of(session: Any, owner_id: str, besides: int, now: dt.datetime) -> int:
        """How many of the owner's datasets but ``besides`` a live run holds. Claims of
        one owner's runs wait for each other here (PostgreSQL: a lock on the owner, for
        the transaction; SQLite: the write lock every claim takes), so two processes
        never both take the owner's last place."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(func.hashtext(owner_id))))
        return session.scalar(
            select(func.count())
            .select_from(Dataset)
            .where(
                Dataset.owner_id == owner_id,
                Dataset.id != besides,
                Dataset.run_owner.is_not(None),
                Dataset.run_until >= now,
            )
        )

    def note_run_process(self, run: str, process: str) -> None:
        """Record the process that runs the pipeline of the run lease ``run``."""
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Dataset).where(Dataset.run_owner == run).values(run_process=process)
            )

    def renew_runs(self, runs: list[str], until: dt.datetime) -> set[str]:
        """Extend the run leases ``runs``; those still held."""
        if not runs:
            return set()
        with self.database.transaction(write=True) as session:
            renewed = session.scalars(
                update(Dataset)
                .where(Dataset.run_owner.in_(runs))
                .values(run_until=until)
                .returning(Dataset.run_owner)
            )
            return {owner for owner in renewed if owner}

    def release_run(self, run: str) -> None:
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Dataset)
                .where(Dataset.run_owner == run)
                .values(run_owner=None, run_until=None, run_process=None)
            )

    def release(self, ref: RevisionRef, owner: str) -> None:
        with self.database.transaction(write=True) as session:
            session.execute(
                update(Revision)
                .where(Revision.id == ref.row_id, Revision.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def oldest_waiting(self) -> dt.datetime | None:
        """When the revision that has waited longest for its engine was handed over."""
        query = select(func.min(Revision.queued)).where(Revision.state == REGISTERED)
        return self.database.read(lambda connection: connection.scalar(query))

    def orphaned_since(
        self, states: tuple[str, ...], idle_since: dt.datetime
    ) -> list[tuple[RevisionRef, dt.datetime]]:
        """Like :meth:`orphaned`, with when each revision last changed."""
        return self._orphaned(states, idle_since, False, with_modified=True)

    def orphaned(
        self, states: tuple[str, ...], idle_since: dt.datetime, newest_only: bool = False
    ) -> list[RevisionRef]:
        """Revisions in ``states`` (of each dataset's newest revision only, if asked) that
        no live runner holds and that have not changed since ``idle_since``: left behind
        by a process that stopped."""
        return self._orphaned(states, idle_since, newest_only)

    def _orphaned(
        self,
        states: tuple[str, ...],
        idle_since: dt.datetime,
        newest_only: bool,
        with_modified: bool = False,
    ) -> list[Any]:
        now = self.clock()
        joined = Revision.dataset_id == Dataset.id
        if newest_only:
            joined = and_(joined, Revision.revision == Dataset.last_revision)
        query = (
            select(
                Dataset.owner_id, Dataset.name, Revision.revision, Revision.id, Revision.modified
            )
            .join(Revision, joined)
            .where(
                Revision.state.in_(states),
                Revision.modified < idle_since,
                or_(Revision.lease_until.is_(None), Revision.lease_until < now),
            )
            .order_by(Revision.modified)
        )
        with self.database.transaction() as session:
            rows = session.execute(query).all()
        if with_modified:
            return [(RevisionRef(*row[:4]), row[4]) for row in rows]
        return [RevisionRef(*row[:4]) for row in rows]
