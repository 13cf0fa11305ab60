"""The fetch policy (datapackage_pipelines_specstore.fetch), on its own: what a URL may
be, and fetches that end on time whatever the server does; real servers on loopback."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
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
from tests.support.archives import with_junk, zip_of

URL_PATTERN = load_schema(SPEC_SCHEMA)["$defs"]["httpUrl"]["pattern"]


@settings(max_examples=300, deadline=None)
@given(url=st.from_regex(URL_PATTERN, fullmatch=True))
def test_every_url_the_schema_admits_the_policy_admits(url):
    """What the published schema says a URL may be, the fetch policy takes as it is (no
    allow-list, every address allowed): the two never disagree on a spec. (By default the
    policy refuses, beyond the schema, a host that is an address which is not public.)"""
    everything = Limits(allow_networks=("0.0.0.0/0", "::/0"))
    assert url_problem(url, everything) is None, url


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
    limits = Limits(allow=("*.data.test",))
    assert url_problem("https://files.data.test/x.csv", limits) is None
    assert url_problem("https://data.test.evil/x.csv", limits) is not None
    assert url_problem("https://files.data.test@evil.test/x.csv", limits) is not None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:5050/api/raw/alice/gdp", "loopback"),
        ("http://127.1.2.3/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),
        ("http://localhost:8000/x.csv", "loopback"),
        ("http://files.localhost/x.csv", "loopback"),
        ("http://10.0.0.5/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.100.100.200/", "non-public"),
        ("http://0.0.0.0:5000/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
    ],
)
def test_addresses_that_are_not_public_are_refused_unless_allowed(url, kind):
    """Without the network: a host that is an address (or a name that always means this
    machine) is judged by what it is, at upload already."""
    problem = url_problem(url)
    assert problem is not None and f"a {kind} address" in problem, problem
    assert problem.endswith("which inputs may not be fetched from (INPUT_ADDRESS_ALLOW)")
    everything = Limits(allow_networks=("0.0.0.0/0", "::/0"))
    assert url_problem(url, everything) is None


def test_public_addresses_and_names_pass_until_they_resolve():
    assert url_problem("http://93.184.215.14/x.csv") is None
    assert url_problem("https://data.example.org/x.csv") is None


def test_ports_are_limited_when_asked():
    limits = Limits(ports=("80", "443", "8000-8099"))
    assert url_problem("https://data.example.org/x.csv", limits) is None
    assert url_problem("http://data.example.org:8042/x.csv", limits) is None
    problem = url_problem("http://data.example.org:6379/", limits)
    assert (
        problem == "the port 6379 of 'http://data.example.org:6379/' is not allowed (INPUT_PORTS)"
    )


class _Server:
    def __init__(self, routes) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
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


def _redirect_to(location: str):
    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return redirect


def _big(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(b"x" * 5000)


# The servers of these tests listen on loopback: allowed here, as an operator would.
LOOPBACK = Limits(timeout=5, allow_networks=("127.0.0.0/8",))


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    running = _Server(
        {
            "/ok": _ok,
            "/drip-headers": _drip_headers,
            "/drip-body": _drip_body,
            "/silent": _silent,
            "/big": _big,
            "/to-loopback": _redirect_to("http://127.0.0.2:1/secret"),
            "/to-ipv6-loopback": _redirect_to("http://[::1]:1/secret"),
        }
    )
    yield running
    running.server.shutdown()


def test_a_fetch_copies_the_body(server):
    out = io.BytesIO()
    fetched = fetch(server.url + "/ok", out, LOOPBACK)
    assert out.getvalue() == b"a,b\n1,2\n" and fetched.size == 8


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/silent"])
def test_the_deadline_holds_however_the_server_sends(server, path):
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetch(server.url + path, io.BytesIO(), replace(LOOPBACK, timeout=1))
    assert str(failed.value) == f"{server.url}{path} took longer than 1 s"
    assert time.monotonic() - started < 3


def test_the_size_cap_holds_without_a_content_length(server):
    with pytest.raises(FetchError) as failed:
        fetch(server.url + "/big", io.BytesIO(), replace(LOOPBACK, max_bytes=1000))
    assert str(failed.value) == (
        f"{server.url}/big is larger than 1000 bytes, the most this server downloads "
        "(DOWNLOAD_MAX_BYTES)"
    )


def test_the_address_a_name_resolves_to_is_checked_before_connecting(server):
    """A name on the allow-list, or any name with none, that resolves to an address that
    is not public is refused before any connection: here ``localhost`` and the test
    server's own address, whose server sees no request."""
    before = server.requests
    for limits in (Limits(timeout=5), Limits(timeout=5, allow=("localhost", "127.0.0.1"))):
        with pytest.raises(FetchError) as failed:
            fetch(server.url.replace("127.0.0.1", "localhost") + "/ok", io.BytesIO(), limits)
        assert str(failed.value) == (
            "localhost is a loopback address, which inputs may not be fetched from "
            "(INPUT_ADDRESS_ALLOW)"
        )
        with pytest.raises(FetchError, match=r"127\.0\.0\.1 is a loopback address"):
            fetch(server.url + "/ok", io.BytesIO(), limits)
    assert server.requests == before


def test_names_are_resolved_and_the_address_checked_each_time():
    """A name that resolves to this machine, or to its private network (the machine's own
    name does, whatever it is), is refused once resolved, with no word of the address
    it resolved to."""
    name = socket.gethostname().lower()
    with pytest.raises(FetchError) as failed:
        fetch(f"http://{name}:1/x", io.BytesIO(), Limits(timeout=5, allow=(name,)))
    message = str(failed.value)
    assert re.fullmatch(
        rf"the host '{re.escape(name)}' resolves to a (loopback|private|link-local) address, "
        r"which inputs may not be fetched from \(INPUT_ADDRESS_ALLOW\)",
        message,
    ), message


def test_every_redirect_is_checked_where_it_goes(server):
    """Allowed to fetch from the test server (127.0.0.1/32), not from 127.0.0.2 nor ::1:
    a redirect there is refused, before connecting."""
    only_server = Limits(timeout=5, allow_networks=("127.0.0.1/32",))
    for path, problem in (
        ("/to-loopback", "127.0.0.2 is a loopback address"),
        ("/to-ipv6-loopback", "::1 is a loopback address"),
    ):
        with pytest.raises(FetchError) as failed:
            fetch(server.url + path, io.BytesIO(), only_server)
        message = str(failed.value)
        assert message.startswith(
            f"{server.url}{path} redirects to a URL that may not be fetched: "
        )
        assert problem in message


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


def test_a_zip_behind_other_bytes_is_measured_all_the_same(tmp_path):
    """Reproduced: four junk bytes before a zip skipped the unpacked-size check (a 20 MB
    extract under a 2 MB cap)."""
    bomb = tmp_path / "bomb.csv"
    bomb.write_bytes(with_junk(zip_of({"bomb.csv": b"0" * 3_000_000})))
    with zipfile.ZipFile(bomb) as opened:  # what reads it after the check
        assert opened.namelist() == ["bomb.csv"]
    with pytest.raises(FetchError, match="unpacks to more than 2000000 bytes"):
        check_unpacked_size(bomb, 2_000_000, "bomb.csv")
    check_unpacked_size(bomb, 4_000_000, "bomb.csv")
    # A text that happens to hold the signature of a zip's end is no zip: it passes.
    text = tmp_path / "text.csv"
    text.write_bytes(b"a,b\n1,PK\x05\x06" + b"\0" * 18 + b"\n")
    check_unpacked_size(text, 10, "text.csv")


def test_a_zips_member_count_is_read_before_its_directory_is_parsed(tmp_path):
    """Reproduced: 400,000 entries were counted only after the whole directory was parsed
    (3 s, 184 MB). The count in the record at the zip's end refuses it first."""
    claimed = tmp_path / "many.zip"
    # An end record that says 400,000 entries (in Zip64's record: the short field is full).
    zip64_record = (
        b"PK\x06\x06"
        + (44).to_bytes(8, "little")
        + (45).to_bytes(2, "little") * 2
        + (0).to_bytes(4, "little") * 2
        + (400_000).to_bytes(8, "little") * 2
        + (30_000_000).to_bytes(8, "little")
        + (0).to_bytes(8, "little")
    )
    locator = (
        b"PK\x06\x07"
        + (0).to_bytes(4, "little")
        + (0).to_bytes(8, "little")
        + (1).to_bytes(4, "little")
    )
    end = (
        b"PK\x05\x06"
        + (0).to_bytes(2, "little") * 2
        + (0xFFFF).to_bytes(2, "little") * 2
        + (0xFFFFFFFF).to_bytes(4, "little") * 2
        + (0).to_bytes(2, "little")
    )
    claimed.write_bytes(zip64_record + locator + end)
    with pytest.raises(FetchError, match="holds more than 10000 files"):
        check_unpacked_size(claimed, 10**9, "many.zip")
    many = tmp_path / "real.zip"
    many.write_bytes(zip_of({f"{index}.csv": b"" for index in range(10_001)}))
    with pytest.raises(FetchError, match="holds more than 10000 files"):
        check_unpacked_size(many, 10**9, "real.zip")
