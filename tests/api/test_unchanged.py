"""What a scheduled revision compares itself with (specstore.store.baselines), and how it
ends when nothing changed (Ledger.end), on both databases; the sources themselves are
asked in tests/system/test_unchanged.py."""

from __future__ import annotations

import datetime as dt

from specstore.events import FAILED, SUCCEEDED
from specstore.store import Store
from specstore.store.baselines import Baseline
from specstore.store.records import RevisionRef, superseded
from tests.api.test_schedules import Clock
from tests.support.api import database_of, make_spec, stored_plan, stored_row_id, upload

PLAN = {"alice/gdp": {"specstore-inputs": "0" * 64, "pipeline": []}}
STATS = {"count_of_rows": 3, "source.gdp": {"etag": '"v1"', "sha256": "a" * 64, "bytes": 9}}


def _ref(app, revision: int, scheduled: bool = False) -> RevisionRef:
    return RevisionRef(
        "alice", "gdp", revision, stored_row_id(app, "alice", "gdp", revision), scheduled
    )


def _scheduled_upload(app, store: Store, keypair) -> None:
    spec = make_spec()
    spec["schedule"] = "every 10m"
    assert upload(app.test_client(), spec, keypair.token("alice")).status_code == 200


def _fire(store: Store, clock: Clock) -> RevisionRef:
    clock.now += dt.timedelta(minutes=10)
    [(ref, _)] = store.ledger.fire_schedules()
    assert ref.scheduled
    return ref


def test_a_scheduled_revision_compares_itself_with_the_last_run_past_the_superseded(app, keypair):
    clock = Clock()
    store = Store.on(database_of(app), clock=clock)
    _scheduled_upload(app, store, keypair)
    clock.now = dt.datetime.now(dt.UTC)
    assert store.ledger.end(_ref(app, 1), SUCCEEDED, [], stats=STATS, plan=PLAN)
    second = _fire(store, clock)
    assert store.baselines.of(second) == Baseline(1, PLAN, STATS)
    # A revision that never ran (superseded) is looked past; the last run still counts.
    assert store.ledger.end(second, FAILED, [superseded(3)])
    third = _fire(store, clock)
    assert store.baselines.of(third) == Baseline(1, PLAN, STATS)
    # The store knows a scheduled revision by its trigger, however the engine took it up.
    taken_up = RevisionRef("alice", "gdp", 3, third.row_id)
    assert store.baselines.of(taken_up) == Baseline(1, PLAN, STATS)


def test_an_upload_or_a_last_run_that_failed_has_nothing_to_compare_with(app, keypair):
    clock = Clock()
    store = Store.on(database_of(app), clock=clock)
    _scheduled_upload(app, store, keypair)
    assert store.baselines.of(_ref(app, 1)) is None  # the first revision
    assert store.ledger.end(_ref(app, 1), SUCCEEDED, [], stats=STATS, plan=PLAN)
    _scheduled_upload(app, store, keypair)
    assert store.baselines.of(_ref(app, 2)) is None  # an upload always runs
    assert store.ledger.end(_ref(app, 2), FAILED, ["gdp: HTTP 503 (tried 4 times)"])
    clock.now = dt.datetime.now(dt.UTC)
    third = _fire(store, clock)
    assert store.baselines.of(third) is None  # the last run failed: this one runs


def test_an_end_with_nothing_to_run_keeps_its_log_stats_and_plan(app, keypair):
    clock = Clock()
    store = Store.on(database_of(app), clock=clock)
    _scheduled_upload(app, store, keypair)
    ref = _ref(app, 1)
    line = "unchanged since revision 7: every source (1 source) is as it was; nothing ran"
    assert store.ledger.end(ref, SUCCEEDED, [], log=[line], stats=STATS, plan=PLAN)
    assert not store.ledger.end(ref, FAILED, ["late"])  # ended already: nothing moves it
    status = app.test_client().get("/source/alice/gdp/status").get_json()
    assert (status["state"], status["errors"], status["logs"]) == (SUCCEEDED, [], [line])
    assert status["stats"] == STATS
    assert stored_plan(app, "alice", "gdp", 1) == PLAN
    info = app.test_client().get("/source/alice/gdp/info").get_json()
    assert info["last_success"] == clock.now.timestamp()
