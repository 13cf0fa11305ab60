"""What an announcement says, how it is signed, and how long its retries wait
(specstore.pipelines.announcer), on their own."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest

from specstore.pipelines.announcer import MAX_WAIT_SECONDS, backoff, body_of, signature
from specstore.store.announcements import EndedRevision
from specstore.store.records import superseded
from tests.support.receiver import signature_holds

MOMENT = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def _ended(**changes) -> EndedRevision:
    values = {
        "owner_id": "alice",
        "dataset": "gdp",
        "row_id": 7,
        "revision": 3,
        "state": "SUCCEEDED",
        "trigger": "scheduled",
        "errors": [],
        "stats": {
            "count_of_rows": 6,
            "retries.gdp": 2,
            "publication": {"datapackage_url": "http://hub/data/alice/gdp/3/datapackage.json"},
        },
        "findability": "published",
        "created": MOMENT,
        "ended": MOMENT + dt.timedelta(seconds=5),
        "modified": MOMENT + dt.timedelta(seconds=5),
        **changes,
    }
    return EndedRevision(**values)


def test_the_body_tells_the_revision_and_where_its_publication_is():
    body = json.loads(body_of(_ended()))
    assert body.pop("id") != json.loads(body_of(_ended()))["id"]
    assert body == {
        "type": "revision.ended",
        "dataset": "alice/gdp",
        "ownerid": "alice",
        "name": "gdp",
        "revision": 3,
        "flowid": "alice/gdp/3",
        "state": "SUCCEEDED",
        "trigger": "scheduled",
        "findability": "published",
        "errors": [],
        "stats": {"count_of_rows": 6, "retries.gdp": 2},
        "datapackage_url": "http://hub/data/alice/gdp/3/datapackage.json",
        "created": "2026-12-07T12:00:00+00:00",
        "ended": "2026-12-07T12:00:05+00:00",
    }


def test_a_superseded_revision_says_so_and_by_which():
    body = json.loads(body_of(_ended(state="FAILED", errors=[superseded(4)], stats={})))
    assert (body["state"], body["superseded_by"]) == ("superseded", 4)
    assert body["datapackage_url"] is None
    failed = json.loads(body_of(_ended(state="FAILED", errors=["superseded by a whim"])))
    assert failed["state"] == "FAILED" and "superseded_by" not in failed


def test_the_signature_is_what_the_documented_check_accepts():
    body = body_of(_ended()).encode()
    now = int(time.time())
    header = signature("s3cret", now, body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert signature_holds("s3cret", header, body)
    assert not signature_holds("other", header, body)
    assert not signature_holds("s3cret", header, body + b" ")
    assert not signature_holds("s3cret", signature("s3cret", now - 3600, body), body)


@pytest.mark.parametrize("attempts", range(1, 25))
def test_backoff_doubles_with_jitter_and_has_a_ceiling(attempts):
    full = min(MAX_WAIT_SECONDS, 2.0 ** (attempts - 1))
    waits = [backoff(attempts, 1.0) for _ in range(50)]
    assert all(full / 2 <= wait <= full for wait in waits)
    assert len(set(waits)) > 1  # jitter: receivers coming back are not met all at once


def test_the_documented_receiver_check_accepts_what_specstore_signs():
    """docs/reference/announcements.md's few lines, run as written, against a real signature."""
    text = (Path(__file__).parents[3] / "docs" / "reference" / "announcements.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)[1]
    namespace: dict = {}
    exec(compile(code, "docs/reference/announcements.md", "exec"), namespace)
    check = namespace["announcement_is_genuine"]
    body = body_of(_ended()).encode()
    header = signature("s3cret", int(time.time()), body)
    assert check("s3cret", header, body)
    assert not check("s3cret", header, body.replace(b"SUCCEEDED", b"FAILED"))
    assert not check("s3cret", signature("s3cret", int(time.time()) - 301, body), body)
