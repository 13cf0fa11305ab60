"""Schedules, specstore's own (``every <N><m|h|d|w>``): checked at upload, limited per owner,
and fired once per due time however many schedulers run."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from specstore.config import configure
from specstore.schedules import MAX_SCHEDULE_SECONDS
from specstore.store import Store
from specstore.store.models import Revision
from tests.support.api import database_of, make_spec, stored_revisions, upload
from tests.support.fitting import SCHEDULE_WINDOW, fitted_schedule


@pytest.mark.parametrize(
    "schedule",
    ["daily", "every day", "every 1", "every 0d", "every 1y", "every 1d\n", "*/5 * * * *", 86400],
)
def test_a_schedule_outside_the_accepted_forms_is_400(client, app, keypair, schedule):
    spec = make_spec()
    spec["schedule"] = schedule
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    message = response.get_json()["errors"][0]
    assert message.startswith("schedule: ")
    if isinstance(schedule, str):
        assert message == (
            f"schedule: {schedule!r} does not match: every <N><m|h|d|w> (minutes, hours, days, "
            "weeks), e.g. every 1d: how often the dataset is processed again, from the "
            "server's SCHEDULE_MIN_INTERVAL (every 10m by default) to ten years (every 520w)"
        )
    assert stored_revisions(app) == []


def test_a_schedule_more_often_than_the_server_allows_is_400(make_app, keypair):
    client = make_app(schedule_min_interval=3600).test_client()
    spec = make_spec()
    spec["schedule"] = "every 30m"
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "schedule: 'every 30m' is more often than this server runs datasets: every 1h at most "
        "(SCHEDULE_MIN_INTERVAL)"
    ]
    spec["schedule"] = "every 2h"
    assert upload(client, spec, keypair.token("alice")).status_code == 200


@pytest.mark.parametrize("schedule", ["every 521w", "every 3651d", "every 999999w"])
def test_a_schedule_past_ten_years_is_400(client, keypair, schedule):
    """A schedule so long that its due date would run past the calendar is refused."""
    spec = make_spec()
    spec["schedule"] = schedule
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [f"schedule: {schedule!r} is longer than every 520w"]
    assert client.get("/source/alice/gdp/status").status_code == 404
    spec["schedule"] = "every 520w"
    assert upload(client, spec, keypair.token("alice")).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_each_due_time_fires_once(app, keypair):
    """The registry with a clock of the test's own: due after one interval, once; a server
    that was down for several intervals makes up for them with one run, not one each;
    an upload without a schedule ends it."""
    clock = Clock()
    store = Store.on(database_of(app), clock=clock)
    registry = store.ledger
    spec = make_spec()
    spec["schedule"] = "every 10m"
    with store.revisions.upload(spec):
        pass

    clock.now += dt.timedelta(minutes=9)
    assert registry.fire_schedules() == []
    clock.now += dt.timedelta(minutes=1)
    fired = registry.fire_schedules()
    assert [(ref.flow_id, fired_spec) for ref, fired_spec in fired] == [("alice/gdp/2", spec)]
    assert registry.fire_schedules() == []

    clock.now += dt.timedelta(minutes=35)  # three intervals and a half, nobody looking
    assert [ref.revision for ref, _ in registry.fire_schedules()] == [3]
    assert registry.fire_schedules() == []
    clock.now += dt.timedelta(minutes=10)
    assert [ref.revision for ref, _ in registry.fire_schedules()] == [4]

    triggers = {
        number: store.revisions.revision("alice", "gdp", number).revision.trigger
        for number in (1, 2, 3, 4)
    }
    assert [triggers[number] for number in (1, 2, 3, 4)] == [
        "dirty-task",
        "scheduled",
        "scheduled",
        "scheduled",
    ]
    del spec["schedule"]
    with store.revisions.upload(spec):
        pass
    clock.now += dt.timedelta(days=1)
    assert registry.fire_schedules() == []


def test_simultaneous_schedulers_fire_a_due_time_once(app):
    """Eight schedulers at once, as eight server processes would be: one revision."""
    clock = Clock()
    spec = make_spec()
    spec["schedule"] = "every 1h"
    with Store.on(database_of(app), clock=clock).revisions.upload(spec):
        pass
    clock.now += dt.timedelta(hours=1)
    barrier = threading.Barrier(8)
    fired: list[int] = []

    def scheduler() -> None:
        registry = Store.on(database_of(app), clock=clock).ledger
        barrier.wait()
        fired.extend(ref.revision for ref, _ in registry.fire_schedules())

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fired == [2]
    assert [row[2] for row in stored_revisions(app)] == [1, 2]


def test_generated_specs_are_fitted_to_the_servers_own_schedule_window():
    # tests/support/fitting.py fits the fuzzers' specs (hypothesis's, schemathesis's)
    # to the window a server has by default.
    assert (configure({}).schedule_min_interval, MAX_SCHEDULE_SECONDS) == SCHEDULE_WINDOW
    assert fitted_schedule("every 3m") == "every 10m"
    assert fitted_schedule("every 904910w") == "every 520w"
    assert fitted_schedule("every 999999m") == "every 999999m"


def test_schedules_are_limited_per_owner(make_app, keypair):
    app = make_app(schedules_per_owner=2)
    client = app.test_client()
    token = keypair.token("alice")
    for dataset in ("one", "two"):
        assert upload(client, make_spec(dataset=dataset), token).status_code == 200
    refused = upload(client, make_spec(dataset="three"), token)
    assert refused.status_code == 400
    assert refused.get_json()["errors"] == [
        "schedule: alice has 2 datasets with a schedule already, the most this server runs "
        "for one owner (SCHEDULES_PER_OWNER): upload one of them without its schedule first"
    ]
    assert {row[1] for row in stored_revisions(app)} == {"one", "two"}
    # A scheduled dataset's next revision, a dataset without one, another owner: as ever.
    assert upload(client, make_spec(dataset="one"), token).status_code == 200
    unscheduled = make_spec(dataset="three")
    del unscheduled["schedule"]
    assert upload(client, unscheduled, token).status_code == 200
    assert upload(client, make_spec("bob", "one"), keypair.token("bob")).status_code == 200
    # Dropping one schedule makes room.
    two = make_spec(dataset="two")
    del two["schedule"]
    assert upload(client, two, token).status_code == 200
    assert upload(client, make_spec(dataset="three"), token).status_code == 200


def test_a_scheduled_revision_stores_no_copy_of_its_spec(make_app, keypair):
    app = make_app(runner_workers=0)
    client = app.test_client()
    spec = make_spec()
    spec["inputs"][0]["parameters"]["descriptor"] = {"readme": "z" * 100_000}
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    components = app.extensions["specstore.components"]
    ledger = components.store.ledger
    now = [ledger.clock()]
    ledger.clock = lambda: now[0]
    for _ in range(2):
        now[0] += dt.timedelta(days=2)
        assert len(ledger.fire_schedules()) == 1
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Revision.revision, Revision.spec.is_(None), Revision.spec_from).order_by(
                Revision.revision
            )
        ).all()
    assert [tuple(row) for row in rows] == [(1, False, None), (2, True, 1), (3, True, 1)]
    for number in (2, 3):
        answer = client.get(f"/source/alice/gdp/{number}").get_json()
        assert answer["trigger"] == "scheduled" and answer["spec_contents"] == spec
    assert client.get("/source/alice/gdp/info").get_json()["spec_contents"] == spec
