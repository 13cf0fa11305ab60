"""Simultaneous uploads of one dataset: consecutive revision numbers, no gaps, no duplicates."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.support.api import make_spec, post_event, stored_revisions, upload

UPLOADS = 24


def test_simultaneous_uploads_of_one_dataset_get_consecutive_revisions(app, keypair):
    token = keypair.token("alice")
    barrier = threading.Barrier(UPLOADS)

    def one_upload(_: int):
        client = app.test_client()
        barrier.wait()
        return upload(client, make_spec(), token)

    with ThreadPoolExecutor(UPLOADS) as pool:
        responses = list(pool.map(one_upload, range(UPLOADS)))

    assert [response.status_code for response in responses] == [200] * UPLOADS
    numbers = sorted(response.get_json()["revision"] for response in responses)
    assert numbers == list(range(1, UPLOADS + 1))
    assert [row[2] for row in stored_revisions(app)] == list(range(1, UPLOADS + 1))


def test_simultaneous_events_for_one_revision_end_in_the_right_state(app, keypair):
    upload(app.test_client(), make_spec(), keypair.token("alice"))
    payloads = [
        {"pipeline_id": "./alice/gdp", "event": "queue"},
        {"pipeline_id": "./alice/gdp", "event": "start"},
        {"pipeline_id": "./alice/gdp", "event": "progress", "log": ["x"]},
        {"pipeline_id": "./alice/gdp", "event": "finish", "success": True},
    ] * 4
    barrier = threading.Barrier(len(payloads))

    def deliver(payload):
        client = app.test_client()
        barrier.wait()
        return post_event(client, payload)

    with ThreadPoolExecutor(len(payloads)) as pool:
        responses = list(pool.map(deliver, payloads))

    assert {response.status_code for response in responses} == {200}
    assert stored_revisions(app) == [("alice", "gdp", 1, "SUCCEEDED")]
    finishes = [r for r, p in zip(responses, payloads, strict=True) if p["event"] == "finish"]
    assert sum(response.get_json()["applied"] for response in finishes) == 1
