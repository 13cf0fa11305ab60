"""Every revision's end announced to the operator's receivers: signed, at least once, from
an outbox in the database, retried with backoff, never in a request's way. Real receivers
on loopback that check the signature by the documented scheme; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from specstore.store.models import Announcement, Dataset, Revision
from tests.support.api import database_of, make_spec, post_event, upload
from tests.support.metrics import samples
from tests.support.pipelines import carrying_its_package
from tests.support.receiver import ANNOUNCE_SECRET, SLOW


@pytest.fixture
def announcing(make_app, receiver) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        settings = {
            "announce_urls": (receiver.url,),
            "announce_secret": ANNOUNCE_SECRET,
            "announce_backoff": 0.05,
            **overrides,
        }
        return make_app(**settings)

    return make


def _until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {check()!r}")


def _rows(app) -> list[Announcement]:
    with database_of(app).transaction() as session:
        rows = session.scalars(select(Announcement).order_by(Announcement.id)).all()
        session.expunge_all()
        return list(rows)


def _announced(app) -> Any:
    """When the (one) revision was put among the announcements (None: not yet)."""
    with database_of(app).transaction() as session:
        return session.scalar(select(Revision.announced))


def _finish(client, keypair, dataset="gdp", success=True, errors=()) -> None:
    assert upload(client, make_spec(dataset=dataset), keypair.token("alice")).status_code == 200
    payload = {"pipeline_id": f"./alice/{dataset}", "event": "finish", "success": success}
    if errors:
        payload["errors"] = list(errors)
    response = post_event(client, payload)
    assert response.status_code == 200, response.get_json()


def _metric(client, name, **labels) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_revision_that_succeeds_is_announced_once_and_signed(announcing, receiver, keypair):
    app = announcing()
    client = app.test_client()
    delivered = _metric(client, "specstore_announcements_total", outcome="delivered")

    _finish(client, keypair)

    taken = _until(receiver.taken)
    time.sleep(0.5)  # a second delivery would come in this time
    assert len(receiver.received) == 1 and len(taken) == 1
    announcement = taken[0]
    assert {
        key: announcement[key] for key in announcement if key not in ("id", "created", "ended")
    } == {
        "type": "revision.ended",
        "dataset": "alice/gdp",
        "ownerid": "alice",
        "name": "gdp",
        "revision": 1,
        "flowid": "alice/gdp/1",
        "state": "SUCCEEDED",
        "trigger": "dirty-task",
        "findability": "published",
        "errors": [],
        "stats": {},
        "datapackage_url": None,
    }
    assert len(announcement["id"]) == 32
    headers = receiver.received[0].headers
    assert headers["Specstore-Announcement"] == announcement["id"]
    assert headers["Content-Type"] == "application/json"
    (row,) = _rows(app)
    assert (row.attempts, row.last_error, row.given_up) == (1, None, None)
    assert row.delivered is not None and row.receiver == receiver.url
    assert _announced(app) is not None
    assert _metric(client, "specstore_announcements_total", outcome="delivered") == delivered + 1
    assert _metric(client, "specstore_announcements_waiting") == 0
    assert client.get("/readyz").get_json()["announcements"] == "ok"


def test_a_failed_revision_is_announced_with_its_errors(announcing, receiver, keypair):
    client = announcing().test_client()
    _finish(client, keypair, success=False, errors=["load: the file broke"])
    (announcement,) = _until(receiver.taken)
    assert announcement["state"] == "FAILED"
    assert announcement["errors"] == ["load: the file broke"]


def test_a_superseded_revision_is_announced_as_superseded(
    announcing, receiver, keypair, example_data, tmp_path
):
    client = announcing(dpp_pipelines_dir=str(tmp_path / "dpp")).test_client()
    for _ in range(2):
        spec = carrying_its_package(example_data)
        assert upload(client, spec, keypair.token("alice")).status_code == 200
    (announcement,) = _until(receiver.taken)
    assert announcement["revision"] == 1
    assert (announcement["state"], announcement["superseded_by"]) == ("superseded", 2)
    assert announcement["errors"] == ["superseded by revision 2 before it ran"]


def test_a_receiver_that_answers_500_gets_the_same_announcement_again(
    announcing, receiver, keypair
):
    receiver.answer(500, 500, 204)
    app = announcing()
    client = app.test_client()
    _finish(client, keypair)
    taken = _until(receiver.taken)
    assert [one.answered for one in receiver.received] == [500, 500, 204]
    assert len({one.announcement["id"] for one in receiver.received}) == 1
    assert all(one.signed for one in receiver.received)
    (row,) = _rows(app)
    assert row.attempts == 3 and row.delivered is not None and row.last_error is None
    assert taken[0]["state"] == "SUCCEEDED"


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(announcing, receiver, keypair):
    receiver.answer(307, 204)
    app = announcing()
    _finish(app.test_client(), keypair)
    _until(receiver.taken)
    assert [one.answered for one in receiver.received] == [307, 204]


def test_a_slow_receiver_holds_up_no_request_and_gets_it_later(announcing, receiver, keypair):
    receiver.answer(SLOW, 204)
    app = announcing(announce_timeout=1.0)
    client = app.test_client()
    _finish(client, keypair)
    _until(lambda: receiver.received)
    # The receiver has not answered (and will not for a minute): the API goes on.
    assert client.get("/source/alice/gdp/status").status_code == 200
    assert upload(client, make_spec(dataset="other"), keypair.token("alice")).status_code == 200
    _until(receiver.taken)
    (row,) = _rows(app)
    assert row.attempts == 2 and row.delivered is not None


def test_a_receiver_that_stays_down_is_given_up_kept_and_counted(
    announcing, receiver, keypair, caplog
):
    receiver.answer(503)
    app = announcing(announce_attempts=3, announce_alert=0.2)
    client = app.test_client()
    given_up = _metric(client, "specstore_announcements_total", outcome="given_up")
    failed = _metric(client, "specstore_announcements_total", outcome="failed")
    with caplog.at_level(logging.WARNING, logger="specstore.announcements"):
        _finish(client, keypair)
        _until(lambda: len(receiver.received) >= 1)
        time.sleep(0.3)
        # Waiting longer than ANNOUNCE_ALERT: degraded, still ready.
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.get_json()["announcements"] == "degraded"
        _until(lambda: _rows(app)[0].given_up is not None)
    assert len(receiver.received) == 3
    (row,) = _rows(app)
    assert (row.attempts, row.last_error, row.delivered) == (3, "HTTP 503", None)
    assert "never to be shown" not in row.last_error
    assert _metric(client, "specstore_announcements_total", outcome="given_up") == given_up + 1
    assert _metric(client, "specstore_announcements_total", outcome="failed") == failed + 2
    assert _metric(client, "specstore_announcements_waiting") == 0
    assert client.get("/readyz").get_json()["announcements"] == "ok"
    assert any(
        record.levelno == logging.ERROR and "given up after 3 attempts: HTTP 503" in record.message
        for record in caplog.records
    )


def test_a_receiver_that_is_down_gets_it_when_it_is_back(announcing, receiver, keypair):
    receiver.answer(503, 503, 503, 503, 204)
    client = announcing().test_client()
    _finish(client, keypair)
    (announcement,) = _until(receiver.taken)
    assert announcement["dataset"] == "alice/gdp"
    assert len(receiver.received) == 5


def test_two_processes_never_deliver_one_announcement_twice(announcing, receiver, keypair):
    """Two apps on one database, as two server processes are: each revision's end reaches
    the receiver once."""
    first, second = announcing(), announcing()
    clients = [first.test_client(), second.test_client()]
    for number in range(12):
        _finish(clients[number % 2], keypair, dataset=f"set-{number}")
    _until(lambda: len(receiver.taken()) >= 12)
    time.sleep(1.0)
    taken = receiver.taken()
    assert sorted(one["name"] for one in taken) == sorted(f"set-{n}" for n in range(12))
    assert len(receiver.received) == 12


def test_without_receivers_no_announcer_runs_and_readiness_says_off(make_app, receiver, keypair):
    app = make_app()
    client = app.test_client()
    _finish(client, keypair)
    time.sleep(2.5)  # more than an announcer's round
    assert _announced(app) is None and _rows(app) == [] and receiver.received == []
    assert client.get("/readyz").get_json()["announcements"] == "off"


def test_ends_from_before_the_receivers_are_old_news_marked_and_not_sent(
    make_app, announcing, receiver, keypair
):
    """Revisions that ended more than a day before an announcer first looks (receivers
    configured on a registry with a history) are marked, not sent; newer ones are sent."""
    quiet = make_app()
    _finish(quiet.test_client(), keypair, dataset="old")
    _finish(quiet.test_client(), keypair, dataset="recent")
    with database_of(quiet).transaction(write=True) as session:
        session.execute(
            update(Revision)
            .where(
                Revision.dataset_id
                == select(Dataset.id).where(Dataset.name == "old").scalar_subquery()
            )
            .values(modified=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        )
    client = announcing().test_client()
    _finish(client, keypair, dataset="new")
    _until(lambda: len(receiver.taken()) >= 2)
    time.sleep(2.5)
    assert sorted(one["name"] for one in receiver.taken()) == ["new", "recent"]
    with database_of(quiet).transaction() as session:
        assert None not in session.scalars(select(Revision.announced)).all()
