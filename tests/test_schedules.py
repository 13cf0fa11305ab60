"""Schedules, specstore's own (``every <N><m|h|d|w>``): checked at upload, fired once per
due time whichever server processes run, and run like an upload on either engine (the
DPP side is in test_dpp_server.py)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import requests

from specstore.config import configure
from specstore.registry import Registry
from specstore.schedules import MAX_SCHEDULE_SECONDS
from tests.conftest import database_of, make_spec, stored_revisions, upload
from tests.support.fitting import SCHEDULE_WINDOW, fitted_schedule
from tests.support.pipelines import carrying_its_package, wait_for


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
    registry = Registry(database_of(app), clock=clock)
    spec = make_spec()
    spec["schedule"] = "every 10m"
    registry.register_revision(spec)

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

    revisions = {revision.revision: revision for revision in registry.revisions("alice", "gdp")}
    assert [revisions[number].trigger for number in (1, 2, 3, 4)] == [
        "upload",
        "scheduled",
        "scheduled",
        "scheduled",
    ]
    del spec["schedule"]
    registry.register_revision(spec)
    clock.now += dt.timedelta(days=1)
    assert registry.fire_schedules() == []


def test_simultaneous_schedulers_fire_a_due_time_once(app):
    """Eight schedulers at once, as eight server processes would be: one revision."""
    clock = Clock()
    spec = make_spec()
    spec["schedule"] = "every 1h"
    Registry(database_of(app), clock=clock).register_revision(spec)
    clock.now += dt.timedelta(hours=1)
    barrier = threading.Barrier(8)
    fired: list[int] = []

    def scheduler() -> None:
        registry = Registry(database_of(app), clock=clock)
        barrier.wait()
        fired.extend(ref.revision for ref, _ in registry.fire_schedules())

    threads = [threading.Thread(target=scheduler) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fired == [2]
    assert [row[2] for row in stored_revisions(app)] == [1, 2]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scheduled_revision_runs_on_the_embedded_runner_once_with_two_servers(
    start_server, database_url, keypair, example_data, tmp_path
):
    env = {
        "DATABASE_URL": database_url,
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "OUTPUT_DIR": str(tmp_path / "output"),
        "SCHEDULE_MIN_INTERVAL": "60",
    }
    servers = [start_server(**env), start_server(**env)]
    spec = carrying_its_package(example_data, dataset="scheduled")
    spec["schedule"] = "every 1m"
    response = requests.post(
        servers[0].url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token("alice")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    uploaded = time.monotonic()
    second = wait_for(
        lambda: requests.get(servers[1].url + "/source/alice/scheduled/2", timeout=10).json(),
        timeout=150,
    )
    assert second["trigger"] == "scheduled" and second["state"] == "SUCCEEDED", second
    assert second["spec_contents"] == spec
    assert time.monotonic() - uploaded >= 55
    status = requests.get(servers[0].url + "/source/alice/scheduled/status", timeout=10).json()
    assert status["trigger"] == "scheduled"
    # No double: one revision for the one due time (the next is a minute away).
    latest = requests.get(servers[0].url + "/source/alice/scheduled/latest", timeout=10).json()
    assert latest["revision"] == 2


def test_generated_specs_are_fitted_to_the_servers_own_schedule_window():
    # tests/support/fitting.py fits the fuzzers' specs (hypothesis's, schemathesis's)
    # to the window a server has by default.
    assert (configure({}).schedule_min_interval, MAX_SCHEDULE_SECONDS) == SCHEDULE_WINDOW
    assert fitted_schedule("every 3m") == "every 10m"
    assert fitted_schedule("every 904910w") == "every 520w"
    assert fitted_schedule("every 999999m") == "every 999999m"
