"""Announcements as operators run specstore: gunicorn processes, killed and started again,
several of them on one database (SQLite and PostgreSQL); a receiver on loopback that
checks every signature by the documented scheme."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from tests.support.api import hook_query, make_spec
from tests.support.receiver import ANNOUNCE_SECRET, Receiver


def _until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {check()!r}")


def _end(server: Any, keypair: Any, dataset: str) -> None:
    """Upload a spec of ``dataset`` and end its revision 1 as an engine would."""
    spec = make_spec(dataset=dataset)
    spec.pop("schedule", None)  # on its own: runs of an upload only
    response = requests.post(
        server.url + "/source/upload",
        json=spec,
        headers={"Auth-Token": keypair.token("alice")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    response = requests.post(
        server.url + "/source/update",
        json={"pipeline_id": f"./alice/{dataset}", "event": "finish", "success": True},
        params=hook_query("alice", dataset, 1),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def _settings(receiver: Receiver) -> dict[str, str]:
    return {
        "ANNOUNCE_URLS": receiver.url,
        "ANNOUNCE_SECRET": ANNOUNCE_SECRET,
        "ANNOUNCE_BACKOFF": "0.2",
    }


def test_an_end_announced_while_the_receiver_was_down_is_delivered_once_after_a_kill(
    gunicorn, keypair, receiver
):
    receiver.answer(503)
    server = gunicorn(**_settings(receiver))
    _end(server, keypair, "gdp")
    _until(lambda: receiver.received)  # tried, and refused: not delivered
    server.kill()  # SIGKILL: no clean-up of any kind

    receiver.answer(204)
    gunicorn(**_settings(receiver))
    (announcement,) = _until(receiver.taken)
    assert (announcement["dataset"], announcement["revision"]) == ("alice/gdp", 1)
    assert announcement["state"] == "SUCCEEDED"
    time.sleep(3)  # more than an announcer's round: a second delivery would be here
    assert len(receiver.taken()) == 1
    assert {one.announcement["id"] for one in receiver.received} == {announcement["id"]}


def test_several_processes_deliver_each_end_once(gunicorn, keypair, receiver):
    """Two servers of two workers each: four announcers on one database."""
    servers = [gunicorn(**_settings(receiver)), gunicorn(**_settings(receiver))]
    names = [f"set-{number}" for number in range(16)]
    for number, name in enumerate(names):
        _end(servers[number % 2], keypair, name)
    _until(lambda: len(receiver.taken()) >= len(names))
    time.sleep(3)
    taken = receiver.taken()
    assert sorted(one["name"] for one in taken) == sorted(names)
    assert len(receiver.received) == len(names)
    metrics = requests.get(servers[0].url + "/metrics", timeout=10).text
    assert "specstore_announcements_waiting 0.0" in metrics
