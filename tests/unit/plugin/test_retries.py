"""Transient failures of a source retried by the fetch policy
(datapackage_pipelines_specstore.fetch), permanent ones not: a real server on loopback
that answers 503, resets connections and asks for Retry-After on cue."""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from datapackage_pipelines_specstore.fetch import FetchError, Limits, fetch

from tests.support.flaky import RESET, Answer, FlakyServer, file_answer

# Loopback allowed, as an operator would for a server on the machine; short waits.
LIMITS = Limits(timeout=5, allow_networks=("127.0.0.0/8",), retries=3, backoff=0.1)
DATA = b"country,year\nFrance,2019\n"
UNAVAILABLE = Answer(503, b"busy")


@pytest.fixture(scope="module")
def server() -> Iterator[FlakyServer]:
    running = FlakyServer()
    yield running
    running.close()


def test_two_503s_then_the_file_succeeds_after_two_logged_retries(server, caplog):
    server.script("/data.csv", UNAVAILABLE, UNAVAILABLE, file_answer(DATA))
    out = io.BytesIO()
    with caplog.at_level(logging.WARNING, logger="specstore"):
        fetched = fetch(server.url + "data.csv", out, LIMITS)
    assert out.getvalue() == DATA
    assert (fetched.size, fetched.retries) == (len(DATA), 2)
    assert server.requests("/data.csv") == 3
    url = server.url + "data.csv"
    assert [record.getMessage().split(" in ")[0] for record in caplog.records] == [
        f"{url} cannot be read: HTTP 503; retry 1 of 3",
        f"{url} cannot be read: HTTP 503; retry 2 of 3",
    ]


def test_a_source_that_always_answers_503_fails_naming_the_url_and_the_status(server):
    server.script("/down.csv", UNAVAILABLE)
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch(server.url + "down.csv", io.BytesIO(), LIMITS)
    assert str(failed.value) == f"{server.url}down.csv cannot be read: HTTP 503 (tried 4 times)"
    assert server.requests("/down.csv") == 4
    # Waits of 0, 0.2 and 0.4 s, each with up to 0.1 s more at random.
    assert 0.6 <= time.monotonic() - started < 3


@pytest.mark.parametrize("status", [429, 500, 502, 504])
def test_every_transient_status_is_retried(server, status):
    server.script(f"/{status}.csv", Answer(status), file_answer(DATA))
    fetched = fetch(f"{server.url}{status}.csv", io.BytesIO(), LIMITS)
    assert fetched.retries == 1 and server.requests(f"/{status}.csv") == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_answers_are_final_at_once(server, status):
    server.script(f"/final-{status}.csv", Answer(status), file_answer(DATA))
    with pytest.raises(FetchError) as failed:
        fetch(f"{server.url}final-{status}.csv", io.BytesIO(), LIMITS)
    assert str(failed.value) == f"{server.url}final-{status}.csv cannot be read: HTTP {status}"
    assert server.requests(f"/final-{status}.csv") == 1


def test_a_connection_reset_before_the_answer_is_retried(server):
    server.script("/reset.csv", RESET, file_answer(DATA))
    out = io.BytesIO()
    fetched = fetch(server.url + "reset.csv", out, LIMITS)
    assert out.getvalue() == DATA and fetched.retries == 1


def test_a_refused_connection_is_retried_then_fails_with_the_count():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/data.csv"
    with pytest.raises(FetchError) as failed:
        fetch(url, io.BytesIO(), LIMITS)
    assert str(failed.value) == (
        f"{url} cannot be read: no connection (connection refused) (tried 4 times)"
    )


def test_retry_after_is_waited_for(server):
    server.script("/later.csv", Answer(503, headers={"Retry-After": "1"}), file_answer(DATA))
    fetch(server.url + "later.csv", io.BytesIO(), LIMITS)
    first, second = server.seen["/later.csv"]
    assert second.at - first.at >= 1.0


def test_no_retry_waits_past_the_deadline(server):
    """A Retry-After longer than the time left before the run's deadline ends the fetch
    at once, rather than waiting to fail."""
    server.script("/much-later.csv", Answer(503, headers={"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch(server.url + "much-later.csv", io.BytesIO(), LIMITS, deadline=time.time() + 5)
    assert str(failed.value) == f"{server.url}much-later.csv cannot be read: HTTP 503"
    assert time.monotonic() - started < 2
    assert server.requests("/much-later.csv") == 1


def test_no_retries_when_the_setting_is_zero(server):
    server.script("/once.csv", UNAVAILABLE, file_answer(DATA))
    with pytest.raises(FetchError):
        fetch(server.url + "once.csv", io.BytesIO(), replace(LIMITS, retries=0))
    assert server.requests("/once.csv") == 1


def test_a_refused_address_and_a_file_over_the_limit_are_not_retried(server):
    server.script("/big.csv", file_answer(b"x" * 5000))
    with pytest.raises(FetchError, match="is larger than 1000 bytes"):
        fetch(server.url + "big.csv", io.BytesIO(), replace(LIMITS, max_bytes=1000))
    assert server.requests("/big.csv") == 1
    server.script("/anything.csv", UNAVAILABLE)
    with pytest.raises(FetchError) as refused:
        fetch(server.url + "anything.csv", io.BytesIO(), replace(LIMITS, allow_networks=()))
    assert str(refused.value) == (
        "127.0.0.1 is a loopback address, which inputs may not be fetched from "
        "(INPUT_ADDRESS_ALLOW)"
    )
    assert server.requests("/anything.csv") == 0
