"""What a run records of each source's version, and a source asked whether it changed
since (datapackage_pipelines_specstore.sources): a real server on loopback that answers
conditional requests, or ignores them, on cue."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
from datapackage_pipelines_specstore.fetch import FetchError, Limits, fetch
from datapackage_pipelines_specstore.sources import conditions, unchanged, version

from tests.support.flaky import Answer, FlakyServer, file_answer

LIMITS = Limits(timeout=5, allow_networks=("127.0.0.0/8",), retries=1, backoff=0.05)
DATA = b"country,year\nFrance,2019\n"
NEWER = b"country,year\nFrance,2020\n"


@pytest.fixture(scope="module")
def server() -> Iterator[FlakyServer]:
    running = FlakyServer()
    yield running
    running.close()


def test_a_fetch_says_the_version_it_got_its_validators_and_its_hash(server):
    answer = file_answer(DATA)
    server.script("/v.csv", answer)
    out = io.BytesIO()
    fetched = fetch(server.url + "v.csv", out, LIMITS)
    assert out.getvalue() == DATA
    assert version(fetched) == {
        "etag": answer.headers["ETag"],
        "last_modified": answer.headers["Last-Modified"],
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "bytes": len(DATA),
    }
    assert not fetched.not_modified


def test_a_source_without_validators_is_recorded_by_its_hash_alone(server):
    server.script("/plain.csv", Answer(200, DATA))
    fetched = fetch(server.url + "plain.csv", io.BytesIO(), LIMITS)
    assert version(fetched) == {"sha256": hashlib.sha256(DATA).hexdigest(), "bytes": len(DATA)}
    assert conditions(version(fetched)) == {}


def test_a_304_to_the_conditional_request_is_unchanged_and_nothing_is_sent(server):
    server.script("/same.csv", file_answer(DATA))
    recorded = version(fetch(server.url + "same.csv", io.BytesIO(), LIMITS))
    assert unchanged(server.url + "same.csv", recorded, LIMITS)
    asked = server.seen["/same.csv"][-1].headers
    assert asked["If-None-Match"] == recorded["etag"]
    assert asked["If-Modified-Since"] == recorded["last_modified"]
    # The 304 itself, as fetch sees it: nothing written.
    out = io.BytesIO()
    answered = fetch(server.url + "same.csv", out, LIMITS, conditions=conditions(recorded))
    assert (answered.not_modified, out.getvalue(), answered.size) == (True, b"", 0)


def test_a_newer_version_is_changed(server):
    server.script("/newer.csv", file_answer(DATA))
    recorded = version(fetch(server.url + "newer.csv", io.BytesIO(), LIMITS))
    server.script("/newer.csv", file_answer(NEWER, modified=1_800_000_000.0))
    assert not unchanged(server.url + "newer.csv", recorded, LIMITS)
    assert server.requests("/newer.csv") == 1


def test_a_server_that_ignores_the_conditions_is_compared_by_content_hash(server):
    server.script("/ignores.csv", Answer(200, DATA, {"ETag": '"v1"'}))
    recorded = version(fetch(server.url + "ignores.csv", io.BytesIO(), LIMITS))
    assert recorded["etag"] == '"v1"'
    # The script's answer carries no Last-Modified and the server never answers 304 to it
    # unless the ETag matches: a new ETag with the same bytes (a re-deployed file).
    server.script("/ignores.csv", Answer(200, DATA, {"ETag": '"v2"'}))
    assert unchanged(server.url + "ignores.csv", recorded, LIMITS)
    server.script("/ignores.csv", Answer(200, NEWER, {"ETag": '"v3"'}))
    assert not unchanged(server.url + "ignores.csv", recorded, LIMITS)


def test_a_source_that_cannot_be_asked_is_no_answer_either_way(server):
    server.script("/gone.csv", Answer(404, b"gone"))
    with pytest.raises(FetchError, match="HTTP 404"):
        unchanged(server.url + "gone.csv", {"sha256": "0" * 64}, LIMITS)
    with pytest.raises(FetchError, match="a loopback address, which inputs may not be fetched"):
        unchanged(server.url + "gone.csv", {"sha256": "0" * 64}, Limits(timeout=5))


def test_a_304_without_a_conditional_request_is_an_error(server):
    server.script("/odd.csv", Answer(304))
    with pytest.raises(FetchError, match="HTTP 304"):
        fetch(server.url + "odd.csv", io.BytesIO(), LIMITS)


def test_a_validator_that_cannot_be_sent_again_is_left_out_and_the_hash_decides(server):
    # A server may fold a header over lines; a value with a line break would make
    # http.client refuse the whole request, so the conditional request goes without it.
    server.script("/folded.csv", Answer(200, DATA))
    recorded = {
        "etag": '"v1"\r\nX-Injected: 1',
        "last_modified": "Mon, 07 Dec 2026 10:00:00 GMT\n",
        "sha256": hashlib.sha256(DATA).hexdigest(),
    }
    assert conditions(recorded) == {}
    assert unchanged(server.url + "folded.csv", recorded, LIMITS)
    asked = server.seen["/folded.csv"][-1].headers
    assert "If-None-Match" not in asked and "X-Injected" not in asked
    assert not unchanged(server.url + "folded.csv", {**recorded, "sha256": "0" * 64}, LIMITS)
