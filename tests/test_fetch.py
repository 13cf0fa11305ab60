"""The fetch policy (datapackage_pipelines_specstore.fetch), on its own: what a URL may
be, and fetches that end on time whatever the server does; real servers on loopback."""

from __future__ import annotations

import contextlib
import gzip
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from datapackage_pipelines_specstore.fetch import (
    FetchError,
    Limits,
    check_unpacked_size,
    fetch,
    url_problem,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from specstore.validation import SPEC_SCHEMA, load_schema

URL_PATTERN = load_schema(SPEC_SCHEMA)["$defs"]["httpUrl"]["pattern"]


@settings(max_examples=300, deadline=None)
@given(url=st.from_regex(URL_PATTERN, fullmatch=True))
def test_every_url_the_schema_admits_the_policy_admits(url):
    """What the published schema says a URL may be, the fetch policy takes as it is (no
    allow-list): the two never disagree on a spec."""
    assert url_problem(url) is None, url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "only http and https URLs can be fetched"),
        ("http://10.0.0.5:80\\@allowed.example/x", "holds characters URLs must not hold"),
        ("http://a b/", "holds characters URLs must not hold"),
        ("http://ex%61mple.com/", "is read differently by different URL parsers"),
        ("http://example.com:99999/", "is not a valid URL"),
        ("http:///x", "has no host"),
        ("http://xn--bcher-kva.example/", None),
        ("http://bücher.example/", "host names are ASCII (IDNA) only"),
    ],
)
def test_urls_two_parsers_could_read_differently_are_refused(url, problem):
    found = url_problem(url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found


def test_the_allow_list_is_matched_on_the_host_the_connection_goes_to():
    allow = ("*.data.test",)
    assert url_problem("https://files.data.test/x.csv", allow) is None
    assert url_problem("https://data.test.evil/x.csv", allow) is not None
    assert url_problem("https://files.data.test@evil.test/x.csv", allow) is not None


class _Server:
    def __init__(self, routes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    routes[self.path](self)  # (the client may give up, as it should)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _ok(handler: BaseHTTPRequestHandler, body: bytes = b"a,b\n1,2\n") -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _drip_headers(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(30):
        handler.wfile.write(b"X-Slow: yes\r\n")
        handler.wfile.flush()
        time.sleep(0.2)


def _drip_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.end_headers()
    for _ in range(30):
        handler.wfile.write(b"1,2\n")
        handler.wfile.flush()
        time.sleep(0.2)


def _silent(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(10)


def _big(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(b"x" * 5000)


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    running = _Server(
        {
            "/ok": _ok,
            "/drip-headers": _drip_headers,
            "/drip-body": _drip_body,
            "/silent": _silent,
            "/big": _big,
        }
    )
    yield running
    running.server.shutdown()


def test_a_fetch_copies_the_body(server):
    out = io.BytesIO()
    fetched = fetch(server.url + "/ok", out, Limits(timeout=5))
    assert out.getvalue() == b"a,b\n1,2\n" and fetched.size == 8


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/silent"])
def test_the_deadline_holds_however_the_server_sends(server, path):
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch(server.url + path, io.BytesIO(), Limits(timeout=1))
    assert str(failed.value) == f"{server.url}{path} took longer than 1 s"
    assert time.monotonic() - started < 3


def test_the_size_cap_holds_without_a_content_length(server):
    with pytest.raises(FetchError) as failed:
        fetch(server.url + "/big", io.BytesIO(), Limits(max_bytes=1000))
    assert str(failed.value) == f"{server.url}/big is larger than 1000 bytes"


def test_archives_are_measured_before_they_are_unpacked(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.csv", b"0" * 2_000_000)
    with pytest.raises(FetchError, match="unpacks to more than 1000000 bytes"):
        check_unpacked_size(bomb, 1_000_000, "bomb.zip")
    check_unpacked_size(bomb, 3_000_000, "bomb.zip")
    packed = tmp_path / "data.csv.gz"
    packed.write_bytes(gzip.compress(b"0" * 2_000_000))
    with pytest.raises(FetchError, match="unpacks to more than 1000000 bytes"):
        check_unpacked_size(packed, 1_000_000, "data.csv.gz")
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"0" * 2_000_000)
    check_unpacked_size(plain, 1_000, "plain.csv")  # not an archive: nothing to unpack
