"""Every statement the store runs, built once and kept: SQLAlchemy then neither builds
nor keys it again on every request, and the driver runs its compiled text (:mod:`.sql`).

Each is made by a function marked :func:`statement`, which builds it once per set of
arguments and checks, as it builds it, that the driver can run it as compiled (no
parameter rendered at execution, such as an ``IN`` list): a statement that could not is
an error where it is written, not a slow path found in production. The few that must
take lists say so (``fast=False``) and are never run in a pipelined transaction.

Parameters are bound by name, as keyword arguments: a statement's conditions take the
name of what they match (``owner_id``, ``name``, ``row_id`` for a revision's row,
``dataset_row`` for a dataset's: SQLAlchemy keeps a column's own name, in an update of
its table, for the value written), and the values it writes are ``new_<column>``.

They are kept in one module, in sections by the caller that runs them (reads, storing a
revision, what the engines change, the runner's leases, settings), so that the columns a
route reads and the indexes the migrations build can be checked against each other in one
place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..events import FAILED, FINAL_STATES, LOADED, REGISTERED, SUCCEEDED
from .models import Announcement, Dataset, Revision, Setting
from .records import ListedDataset
from .sql import takes_the_fast_path

F = TypeVar("F", bound=Callable[..., Any])
DATASETS, REVISIONS, SETTINGS = Dataset.__table__, Revision.__table__, Setting.__table__
ANNOUNCEMENTS = Announcement.__table__


def statement(build: F | None = None, *, fast: bool = True) -> Any:
    """Build the statement once per arguments; with ``fast``, check the driver takes it
    (a statement, or a tuple of them). A statement built for one dialect (its first
    argument names it) is checked only when it is PostgreSQL's, the fast path's."""

    def decorate(build: F) -> F:
        @functools.cache
        def built(*arguments: Any) -> Any:
            made = build(*arguments)
            other_dialect = bool(arguments) and arguments[0] in ("sqlite",)
            for one in made if isinstance(made, tuple) else (made,):
                if fast and not other_dialect and not takes_the_fast_path(one):
                    raise TypeError(
                        f"{build.__name__}{arguments}: the driver cannot run it as built"
                    )
            return made

        return built  # type: ignore[return-value]

    return decorate(build) if build is not None else decorate


def new(table: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``{column: bindparam("new_<column>")}`` for ``names``, each of its column's type."""
    return {name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names}


# -- reading a revision --------------------------------------------------------------------

DATASET_COLUMNS = ("id", "owner_id", "name", "last_revision", "findability", "created")
DATASET_COLUMNS += ("modified", "last_success")
REVISION_COLUMNS = ("id", "revision", "findability", "trigger", "state", "success", "logs")
REVISION_COLUMNS += ("errors", "stats", "created", "modified", "queued", "started", "ended")
# The spec, as the JSON text the database keeps; the same without what its input carries
# (the data package and the resource mapping: how ``info`` shows it as its ``source``, so
# that a large spec is not sent twice); the main pipeline as users are shown it, as text.
SPEC_TEXT, SOURCE_TEXT, SHOWN_PIPELINE_TEXT = "spec_text", "source_text", "shown_pipeline_text"
# A revision handed over before the shown pipeline was stored: its main pipeline as
# planned (NULL when the shown one is stored), for the service to clean.
PLANNED_PIPELINE_TEXT = "planned_pipeline_text"
DATASET_KEY = ("owner_id", "name", "findability")
# What each kind of answer reads of a dataset and of its revision: nothing more.
_READ_AS_A_REVISION = ("revision", "findability", "trigger", "state", SPEC_TEXT, "created")
VIEWS = {
    "status": (
        DATASET_KEY,
        ("revision", "findability", "trigger", "state", "errors", "logs", "modified", "stats"),
    ),
    "revision": (DATASET_KEY, (*_READ_AS_A_REVISION, "modified", "errors", "stats")),
    "info": (
        (*DATASET_KEY, "last_success"),
        (*REVISION_COLUMNS[1:], SPEC_TEXT, SOURCE_TEXT, SHOWN_PIPELINE_TEXT, PLANNED_PIPELINE_TEXT),
    ),
    "page": (DATASET_KEY, (*REVISION_COLUMNS[1:], SHOWN_PIPELINE_TEXT, PLANNED_PIPELINE_TEXT)),
}


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


def spec(revisions: Any = REVISIONS) -> Any:
    """A revision's spec: its own, else (a scheduled revision) that of the revision it
    repeats, read only then."""
    origin = REVISIONS.alias("origin")
    shared = (
        select(origin.c.spec)
        .where(
            origin.c.dataset_id == revisions.c.dataset_id,
            origin.c.revision == revisions.c.spec_from,
        )
        .scalar_subquery()
    )
    return func.coalesce(revisions.c.spec, shared, type_=revisions.c.spec.type)


def _column(table: Any, name: str) -> Any:
    if name == SPEC_TEXT:
        return cast(spec(table), Text)
    if name == SOURCE_TEXT:
        return WithoutInputParameters(spec(table))
    if name == SHOWN_PIPELINE_TEXT:
        return cast(table.c.shown_pipeline, Text)
    if name == PLANNED_PIPELINE_TEXT:
        # The key bound as ``main_id``; the index's own type makes it a JSON path on
        # SQLite. No such pipeline: NULL (PostgreSQL), 'null' (SQLite).
        key = bindparam("main_id", type_=JSON.JSONIndexType())
        planned = cast(table.c.pipelines[key], Text)
        return case((table.c.shown_pipeline.is_(None), planned))
    return table.c[name]


def labelled(table: Any, names: tuple[str, ...]) -> list[Any]:
    """``names`` of ``table``, labelled ``<table>.<column>`` (see ``DatasetRevision``)."""
    return [_column(table, name).label(f"{table.name}.{name}") for name in names]


@statement
def revision(kind: str, view: str) -> Select[Any]:
    """One revision of a dataset (``latest``, ``successful`` or ``number``) with its
    dataset, the columns ``view`` answers with. A numbered or the successful revision is
    joined to its dataset from the outside: a dataset without it is a row whose revision
    columns are all NULL, so that one statement tells a missing revision from a missing
    dataset (the newest revision is there whenever its dataset is)."""
    dataset_columns, revision_columns = VIEWS[view]
    query = select(
        *labelled(DATASETS, dataset_columns), *labelled(REVISIONS, revision_columns)
    ).where(DATASETS.c.owner_id == bindparam("owner_id"), DATASETS.c.name == bindparam("name"))
    of_dataset = REVISIONS.c.dataset_id == DATASETS.c.id
    if kind == "latest":
        return query.join(
            REVISIONS, of_dataset & (REVISIONS.c.revision == DATASETS.c.last_revision)
        )
    if kind == "successful":
        succeeded = of_dataset & (REVISIONS.c.state == SUCCEEDED)
        return query.outerjoin(REVISIONS, succeeded).order_by(REVISIONS.c.revision.desc()).limit(1)
    numbered = of_dataset & (REVISIONS.c.revision == bindparam("number"))
    return query.outerjoin(REVISIONS, numbered)


@statement
def listing(by_owner: bool, include_hidden: bool) -> tuple[Select[Any], Select[Any]]:
    """A page of datasets with their newest revision's state and how many datasets in all
    (a subquery over the datasets alone: PostgreSQL then joins the revisions of the
    page's rows only), and that count alone, for a page past the last."""

    def visible(datasets: Any) -> list[Any]:
        found = [datasets.c.owner_id == bindparam("owner_id")] if by_owner else []
        if not include_hidden:
            found.append(datasets.c.findability == bindparam("published"))
        return found

    def count(datasets: Any) -> Select[Any]:
        return select(func.count().label("total")).select_from(datasets).where(*visible(datasets))

    listed = ListedDataset._fields
    page = (
        select(
            *labelled(DATASETS, listed[:3]),
            *labelled(REVISIONS, listed[3:]),
            count(DATASETS.alias("counted")).scalar_subquery().label("total"),
        )
        .join(
            REVISIONS,
            (REVISIONS.c.dataset_id == DATASETS.c.id)
            & (REVISIONS.c.revision == DATASETS.c.last_revision),
        )
        .where(*visible(DATASETS))
        .order_by(DATASETS.c.modified.desc(), DATASETS.c.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return page, count(DATASETS)


@statement
def revisions_of() -> Select[Any]:
    """A dataset's revisions, newest first, as its page lists them."""
    return (
        select(
            REVISIONS.c.revision,
            REVISIONS.c.findability,
            REVISIONS.c.state,
            REVISIONS.c.created,
            REVISIONS.c.modified,
        )
        .join(DATASETS, REVISIONS.c.dataset_id == DATASETS.c.id)
        .where(DATASETS.c.owner_id == bindparam("owner_id"), DATASETS.c.name == bindparam("name"))
        .order_by(REVISIONS.c.revision.desc())
        .limit(bindparam("limit"))
    )


@statement
def last_revision() -> Select[Any]:
    return select(DATASETS.c.last_revision).where(
        DATASETS.c.owner_id == bindparam("owner_id"), DATASETS.c.name == bindparam("name")
    )


@statement
def scheduled_datasets() -> Select[Any]:
    """How many of the owner's datasets but ``name`` have a schedule."""
    return (
        select(func.count())
        .select_from(DATASETS)
        .where(
            DATASETS.c.owner_id == bindparam("owner_id"),
            DATASETS.c.schedule_seconds.is_not(None),
            DATASETS.c.name != bindparam("name"),
        )
    )


# -- storing a revision -----------------------------------------------------------------------


@statement
def upsert_dataset(dialect: str) -> Any:
    """A new dataset with its counter at 1, or the counter bumped by one (and the
    dataset's findability and schedule the new revision's); its id and the counter."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(DATASETS)
    columns = ("owner_id", "name", "findability", "created", "modified", "schedule_seconds")
    columns += ("next_run",)
    return (
        insert.values(last_revision=1, **new(DATASETS, columns))
        .on_conflict_do_update(
            index_elements=["owner_id", "name"],
            set_={
                "last_revision": DATASETS.c.last_revision + 1,
                "findability": insert.excluded.findability,
                "modified": insert.excluded.modified,
                "schedule_seconds": insert.excluded.schedule_seconds,
                "next_run": insert.excluded.next_run,
            },
        )
        .returning(DATASETS.c.id, DATASETS.c.last_revision)
    )


@statement
def insert_revision(handed_over: tuple[str, ...], superseding: bool, shared: bool) -> Any:
    """A new revision: LOADED, or with the columns its engine's handover sets; when
    ``superseding`` (where writes go in CTEs), the older revisions still waiting ended
    in the same statement. A ``shared`` one stores no spec: it has that of revision
    ``new_spec_from``."""
    columns = ("dataset_id", "revision", "spec_from" if shared else "spec", "findability")
    columns += ("trigger", "created")
    values: dict[str, Any] = {"state": LOADED, "logs": [], "errors": [], "stats": {}}
    values["modified"] = bindparam("new_created", type_=REVISIONS.c.created.type)
    values.update(new(REVISIONS, columns + handed_over))
    inserted = REVISIONS.insert().values(**values).returning(REVISIONS.c.id)
    return inserted.add_cte(supersede().cte("superseded")) if superseding else inserted


@statement
def supersede() -> Any:
    """The revisions of the dataset ``dataset_row`` older than ``newer`` still waiting to
    run (LOADED or REGISTERED) ended: FAILED, superseded (``superseded_errors``)."""
    now = bindparam("now", type_=REVISIONS.c.ended.type)
    return (
        update(REVISIONS)
        .where(
            REVISIONS.c.dataset_id == bindparam("dataset_row"),
            REVISIONS.c.revision < bindparam("newer"),
            # Not IN (...): a list is rendered at execution.
            or_(REVISIONS.c.state == LOADED, REVISIONS.c.state == REGISTERED),
        )
        .values(
            state=FAILED,
            success=False,
            errors=bindparam("superseded_errors", type_=REVISIONS.c.errors.type),
            started=func.coalesce(REVISIONS.c.started, now),
            ended=now,
            modified=now,
        )
    )


# -- what engines change of a revision ----------------------------------------------------

# What an event (or an end) reads of a revision: its row id and number, then the columns
# it may change.
TRACKED = ("state", "success", "logs", "errors", "stats", "queued", "started", "ended")


@statement
def event_target(by_number: bool) -> Select[Any]:
    """The dataset's id and what an event may change of one of its revisions (the one
    numbered ``number``, or the newest), both rows locked."""
    number = bindparam("number") if by_number else DATASETS.c.last_revision
    return (
        select(DATASETS.c.id, REVISIONS.c.id, REVISIONS.c.revision, *REVISIONS.c[TRACKED])
        .join(
            REVISIONS,
            and_(REVISIONS.c.dataset_id == DATASETS.c.id, REVISIONS.c.revision == number),
        )
        .where(DATASETS.c.owner_id == bindparam("owner_id"), DATASETS.c.name == bindparam("name"))
        .with_for_update()
    )


@statement
def tracked_by_id() -> Select[Any]:
    """A revision's dataset and what may change of it, by its row id, locked."""
    return (
        select(REVISIONS.c.dataset_id, *REVISIONS.c[TRACKED])
        .where(REVISIONS.c.id == bindparam("row_id"))
        .with_for_update()
    )


@statement
def update_revision(columns: tuple[str, ...], from_state: str | None = None) -> Any:
    """``columns`` of the revision ``row_id`` (in ``from_state`` only, if given)."""
    matches = [REVISIONS.c.id == bindparam("row_id")]
    if from_state is not None:
        matches.append(REVISIONS.c.state == from_state)
    return update(REVISIONS).where(*matches).values(**new(REVISIONS, columns))


@statement
def update_dataset(columns: tuple[str, ...]) -> Any:
    return (
        update(DATASETS)
        .where(DATASETS.c.id == bindparam("dataset_row"))
        .values(**new(DATASETS, columns))
    )


@statement
def event_writes(dialect: str, columns: tuple[str, ...], dataset: tuple[str, ...]) -> tuple:
    """What an event writes: the revision's ``columns`` and, when the event changed the
    revision's story, the dataset's (``dataset``); one statement where writes go in CTEs
    (PostgreSQL), elsewhere two."""
    revision = update_revision(columns)
    if not dataset:
        return (revision,)
    touched = update_dataset(dataset)
    if dialect == "postgresql":
        return (revision.add_cte(touched.cte("dataset_touched")),)
    return (revision, touched)


@statement
def dataset_of_revision() -> Select[Any]:
    return select(REVISIONS.c.dataset_id).where(REVISIONS.c.id == bindparam("row_id"))


@statement
def spec_of() -> Select[Any]:
    return select(spec()).where(REVISIONS.c.id == bindparam("row_id"))


@statement
def newest_of_revision() -> Select[Any]:
    """The newest revision number of the dataset of the revision ``row_id``."""
    return (
        select(DATASETS.c.last_revision)
        .join(REVISIONS, REVISIONS.c.dataset_id == DATASETS.c.id)
        .where(REVISIONS.c.id == bindparam("row_id"))
    )


@statement
def due_datasets() -> Select[Any]:
    """Datasets whose schedule is due, with their newest revision's spec, locked (those
    another process has locked skipped)."""
    newest = REVISIONS.alias("newest")
    return (
        select(
            DATASETS.c.id,
            DATASETS.c.owner_id,
            DATASETS.c.name,
            DATASETS.c.last_revision,
            DATASETS.c.schedule_seconds,
            spec(newest),
            func.coalesce(newest.c.spec_from, newest.c.revision),
        )
        .join(
            newest,
            (newest.c.dataset_id == DATASETS.c.id)
            & (newest.c.revision == DATASETS.c.last_revision),
        )
        .where(DATASETS.c.next_run <= bindparam("now"))
        .order_by(DATASETS.c.next_run)
        .limit(bindparam("limit"))
        .with_for_update(of=DATASETS, skip_locked=True)
    )


@statement
def orphaned(newest_only: bool) -> Select[Any]:
    """Revisions in one of ``states`` (at most four: no list rendered at execution) that
    no live runner holds and that have not changed since ``idle_since``."""
    joined = REVISIONS.c.dataset_id == DATASETS.c.id
    if newest_only:
        joined = and_(joined, REVISIONS.c.revision == DATASETS.c.last_revision)
    return (
        select(
            DATASETS.c.owner_id,
            DATASETS.c.name,
            REVISIONS.c.revision,
            REVISIONS.c.id,
            REVISIONS.c.modified,
        )
        .join(REVISIONS, joined)
        .where(
            or_(*(REVISIONS.c.state == bindparam(f"state_{index}") for index in range(4))),
            REVISIONS.c.modified < bindparam("idle_since"),
            or_(REVISIONS.c.lease_until.is_(None), REVISIONS.c.lease_until < bindparam("now")),
        )
        .order_by(REVISIONS.c.modified)
    )


@statement
def oldest_waiting() -> Select[Any]:
    return select(func.min(REVISIONS.c.queued)).where(REVISIONS.c.state == REGISTERED)


# -- what a scheduled revision compares itself with ---------------------------------------------

# How many of a dataset's revisions before a scheduled one are looked through for the last
# that ran (superseded ones never did).
EARLIER_LOOKED_AT = 20


@statement
def earlier_revisions() -> Select[Any]:
    """The trigger of the revision ``row_id``, with the number, state and errors of each of
    its dataset's revisions before it, newest first (up to EARLIER_LOOKED_AT; none: it is
    the first)."""
    this, earlier = REVISIONS.alias("this"), REVISIONS.alias("earlier")
    return (
        select(this.c.trigger, earlier.c.revision, earlier.c.state, earlier.c.errors)
        .select_from(
            this.join(
                earlier,
                and_(
                    earlier.c.dataset_id == this.c.dataset_id,
                    earlier.c.revision < this.c.revision,
                ),
            )
        )
        .where(this.c.id == bindparam("row_id"))
        .order_by(earlier.c.revision.desc())
        .limit(EARLIER_LOOKED_AT)
    )


@statement
def plan_and_stats() -> Select[Any]:
    """The plan and statistics of the revision ``number`` of the dataset of ``row_id``."""
    this, other = REVISIONS.alias("this"), REVISIONS.alias("other")
    return (
        select(other.c.pipelines, other.c.stats)
        .select_from(this.join(other, other.c.dataset_id == this.c.dataset_id))
        .where(this.c.id == bindparam("row_id"), other.c.revision == bindparam("number"))
    )


# -- announcements ------------------------------------------------------------------------------

# What an announcement tells of a revision (with its dataset's owner and name first).
ANNOUNCED_COLUMNS = ("id", "revision", "state", "trigger", "errors", "stats", "findability")
ANNOUNCED_COLUMNS += ("created", "ended", "modified")


def _waiting(now: Any) -> tuple[Any, ...]:
    """An announcement neither delivered nor given up, that no live process delivers."""
    return (
        ANNOUNCEMENTS.c.delivered.is_(None),
        ANNOUNCEMENTS.c.given_up.is_(None),
        or_(ANNOUNCEMENTS.c.lease_until.is_(None), ANNOUNCEMENTS.c.lease_until < now),
    )


@statement
def ended_unannounced() -> Select[Any]:
    """Up to ``limit`` revisions that ended and are not announced yet, oldest first."""
    return (
        select(
            DATASETS.c.owner_id,
            DATASETS.c.name,
            *(REVISIONS.c[name] for name in ANNOUNCED_COLUMNS),
        )
        .join(DATASETS, DATASETS.c.id == REVISIONS.c.dataset_id)
        .where(
            REVISIONS.c.announced.is_(None),
            or_(*(REVISIONS.c.state == state for state in sorted(FINAL_STATES))),
        )
        .order_by(REVISIONS.c.id)
        .limit(bindparam("limit"))
    )


@statement
def mark_stale_announced() -> Any:
    """Every revision that ended before ``ended_before`` and is not announced yet, marked
    announced (``new_announced``) without an announcement: old news."""
    return (
        update(REVISIONS)
        .where(
            REVISIONS.c.announced.is_(None),
            or_(*(REVISIONS.c.state == state for state in sorted(FINAL_STATES))),
            REVISIONS.c.modified < bindparam("ended_before", type_=REVISIONS.c.modified.type),
        )
        .values(**new(REVISIONS, ("announced",)))
    )


@statement
def mark_announced() -> Any:
    """The revision ``row_id`` announced, unless another process has just done it."""
    return (
        update(REVISIONS)
        .where(REVISIONS.c.id == bindparam("row_id"), REVISIONS.c.announced.is_(None))
        .values(**new(REVISIONS, ("announced",)))
    )


@statement
def queue_announcement() -> Any:
    names = ("revision_row", "receiver", "body", "created", "attempts", "next_attempt")
    return ANNOUNCEMENTS.insert().values(**new(ANNOUNCEMENTS, names))


@statement
def due_announcements() -> Select[Any]:
    """Up to ``limit`` announcements due at ``now`` that no live process delivers."""
    now = bindparam("now", type_=ANNOUNCEMENTS.c.next_attempt.type)
    return (
        select(ANNOUNCEMENTS.c.id)
        .where(*_waiting(now), ANNOUNCEMENTS.c.next_attempt <= now)
        .order_by(ANNOUNCEMENTS.c.next_attempt)
        .limit(bindparam("limit"))
    )


@statement
def lease_announcement() -> Any:
    """The announcement ``row_id`` taken by ``new_lease_owner`` (nothing, when another
    process took it first): what to send, and where."""
    now = bindparam("now", type_=ANNOUNCEMENTS.c.next_attempt.type)
    return (
        update(ANNOUNCEMENTS)
        .where(ANNOUNCEMENTS.c.id == bindparam("row_id"), *_waiting(now))
        .values(**new(ANNOUNCEMENTS, ("lease_owner", "lease_until")))
        .returning(ANNOUNCEMENTS.c.receiver, ANNOUNCEMENTS.c.body, ANNOUNCEMENTS.c.attempts)
    )


@statement
def announcement_attempted() -> Any:
    """What one attempt at the announcement ``row_id`` (held by ``owner``) came to."""
    names = ("attempts", "last_error", "next_attempt", "delivered", "given_up")
    return (
        update(ANNOUNCEMENTS)
        .where(
            ANNOUNCEMENTS.c.id == bindparam("row_id"),
            ANNOUNCEMENTS.c.lease_owner == bindparam("owner"),
        )
        .values(**new(ANNOUNCEMENTS, names), lease_owner=None, lease_until=None)
    )


@statement
def announcements_waiting() -> Select[Any]:
    """How many announcements wait for delivery, and when the oldest was made."""
    return select(func.count(), func.min(ANNOUNCEMENTS.c.created)).where(
        ANNOUNCEMENTS.c.delivered.is_(None), ANNOUNCEMENTS.c.given_up.is_(None)
    )


# -- leases -------------------------------------------------------------------------------------


@statement
def claim() -> Any:
    """The lease on an unfinished revision, unless a live runner holds it."""
    now = bindparam("now", type_=REVISIONS.c.lease_until.type)
    unfinished = [REVISIONS.c.state != state for state in sorted(FINAL_STATES)]
    return (
        update(REVISIONS)
        .where(
            REVISIONS.c.id == bindparam("row_id"),
            *unfinished,
            or_(
                REVISIONS.c.lease_until.is_(None),
                REVISIONS.c.lease_until < now,
                REVISIONS.c.lease_owner == bindparam("owner"),
            ),
        )
        .values(**new(REVISIONS, ("lease_owner", "lease_until")))
    )


@statement(fast=False)
def renew() -> Any:
    """The leases ``owner`` holds on the revisions ``row_ids``, extended; their ids."""
    return (
        update(REVISIONS)
        .where(
            REVISIONS.c.id.in_(bindparam("row_ids", expanding=True)),
            REVISIONS.c.lease_owner == bindparam("owner"),
        )
        .values(**new(REVISIONS, ("lease_until",)))
        .returning(REVISIONS.c.id)
    )


@statement
def release() -> Any:
    return (
        update(REVISIONS)
        .where(REVISIONS.c.id == bindparam("row_id"), REVISIONS.c.lease_owner == bindparam("owner"))
        .values(lease_owner=None, lease_until=None)
    )


@statement
def run_lease_of() -> Select[Any]:
    """The run lease of the dataset of the revision ``row_id``, the dataset's row locked."""
    return (
        select(
            DATASETS.c.id,
            DATASETS.c.owner_id,
            DATASETS.c.run_owner,
            DATASETS.c.run_until,
            DATASETS.c.run_process,
        )
        .join(REVISIONS, REVISIONS.c.dataset_id == DATASETS.c.id)
        .where(REVISIONS.c.id == bindparam("row_id"))
        .with_for_update(of=DATASETS)
    )


@statement
def lock_owner() -> Select[Any]:
    """A lock on the owner, for the transaction (PostgreSQL)."""
    return select(func.pg_advisory_xact_lock(func.hashtext(bindparam("owner_id"))))


@statement
def runs_of_owner() -> Select[Any]:
    """How many of the owner's datasets but ``dataset_row`` a live run holds."""
    return (
        select(func.count())
        .select_from(DATASETS)
        .where(
            DATASETS.c.owner_id == bindparam("owner_id"),
            DATASETS.c.id != bindparam("dataset_row"),
            DATASETS.c.run_owner.is_not(None),
            DATASETS.c.run_until >= bindparam("now"),
        )
    )


@statement
def take_run() -> Any:
    """The run lease of the dataset ``dataset_row``, taken for ``new_run_owner``."""
    return (
        update(DATASETS)
        .where(DATASETS.c.id == bindparam("dataset_row"))
        .values(run_process=None, **new(DATASETS, ("run_owner", "run_until")))
    )


@statement
def release_run() -> Any:
    return (
        update(DATASETS)
        .where(DATASETS.c.run_owner == bindparam("run"))
        .values(run_owner=None, run_until=None, run_process=None)
    )


@statement
def note_run_process() -> Any:
    return (
        update(DATASETS)
        .where(DATASETS.c.run_owner == bindparam("run"))
        .values(**new(DATASETS, ("run_process",)))
    )


@statement(fast=False)
def renew_runs() -> Any:
    return (
        update(DATASETS)
        .where(DATASETS.c.run_owner.in_(bindparam("runs", expanding=True)))
        .values(**new(DATASETS, ("run_until",)))
        .returning(DATASETS.c.run_owner)
    )


# -- the installation's values, and what /metrics counts ---------------------------------------


@statement
def setting() -> Select[Any]:
    return select(SETTINGS.c.value).where(SETTINGS.c.name == bindparam("name"))


@statement
def add_setting(dialect: str) -> Any:
    """The value, unless another process added one first (its stays)."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(SETTINGS)
    return insert.values(**new(SETTINGS, ("name", "value"))).on_conflict_do_nothing(
        index_elements=["name"]
    )


@statement
def remove_setting() -> Any:
    return delete(SETTINGS).where(SETTINGS.c.name == bindparam("name"))


@statement
def ping() -> Select[Any]:
    """An answer from the database, for readiness."""
    return select(literal(1))


@statement
def revisions_by_state() -> Select[Any]:
    return select(REVISIONS.c.state, func.count()).group_by(REVISIONS.c.state)
