"""Fetching what a spec names, by one policy, wherever a pipeline runs.

Every URL a spec or a data package gives is untrusted. This module is the only
code that reads one, in specstore's API process and in both engines (the embedded
runner and DPP run the same ``specstore.load`` step), so one policy holds everywhere:

* **Parsed once, the way it is fetched.** A URL is parsed by urllib3's parser, and
  the connection goes to exactly the host that parse found. Anything two parsers
  could read differently (a backslash, white space, control characters, a host that
  Python's ``urlsplit`` reads otherwise) is refused outright.
* **Only http and https**, only to hosts the allow-list admits (shell-style
  patterns; an empty list admits any host), checked again at every redirect.
* **Limits that hold against hostile servers:** a wall-clock deadline for the whole
  download, redirects and headers included (a watchdog shuts the socket down when it
  passes, however slowly the server drips bytes), and a cap on the bytes received.
* **Archives are measured before anything unpacks them:** a zip (xlsx and ods are
  zips) by its central directory, which Python's ``zipfile`` never reads past, and a
  gzip stream by decompressing it once with a counter, so a small bomb cannot fill
  the disk or the memory of whatever parses it.

It needs only the standard library and urllib3, so it runs in specstore's
virtualenv and in DPP's alike.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import gzip
import socket
import threading
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, LocationParseError
from urllib3.util import parse_url

SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
CHUNK_BYTES = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
MAX_ZIP_MEMBERS = 10_000
USER_AGENT = "specstore"
# Characters no URL of ours needs and two parsers may read differently.
_REFUSED = frozenset("\\ \t\r\n\x7f") | frozenset(chr(code) for code in range(32))


class FetchError(Exception):
    """The URL may not be fetched, or fetching it failed; the message says why, once."""


@dataclass(frozen=True)
class Limits:
    """The policy a fetch runs under: which hosts, how long, how much."""

    allow: tuple[str, ...] = ()
    timeout: float = 60.0
    max_bytes: int = 100 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024

    def as_parameters(self) -> dict[str, Any]:
        """The limits as a plan carries them to the step that fetches."""
        return {**asdict(self), "allow": list(self.allow)}

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any] | None) -> Limits:
        given = dict(parameters or {})
        given["allow"] = tuple(str(pattern).lower() for pattern in given.get("allow") or ())
        return cls(**given)


def url_problem(url: Any, allow: tuple[str, ...] = ()) -> str | None:
    """Why ``url`` may not be fetched under ``allow``, or None when it may."""
    if not isinstance(url, str) or not url:
        return f"{url!r} is not a URL"
    return _string_url_problem(url, allow)


# An upload checks each of its URLs more than once (the spec's, then as resources are
# planned); the answer depends on the text alone.
@functools.lru_cache(maxsize=1024)
def _string_url_problem(url: str, allow: tuple[str, ...]) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"a URL is at most {MAX_URL_LENGTH} characters"
    if any(character in _REFUSED for character in url):
        return f"{url!r} holds characters URLs must not hold (white space, '\\', controls)"
    try:
        parsed = parse_url(url)
        other = urlsplit(url)
        other_port = other.port
    except (LocationParseError, ValueError):
        return f"{url!r} is not a valid URL"
    scheme = (parsed.scheme or "").lower()
    if scheme not in SCHEMES:
        return f"only http and https URLs can be fetched, not {url!r}"
    host = (parsed.host or "").strip("[]").lower()
    if not host:
        return f"{url!r} has no host"
    if not (host.isascii() and (other.hostname or "").isascii()):
        return f"{url!r}: host names are ASCII (IDNA) only"
    if (other.scheme.lower(), (other.hostname or "").lower(), other_port) != (
        scheme,
        host,
        parsed.port,
    ):
        return f"{url!r} is read differently by different URL parsers"
    if allow and not any(fnmatch.fnmatchcase(host, pattern) for pattern in allow):
        return f"the host {host!r} is not allowed (INPUT_URL_ALLOW)"
    return None


def check_url(url: Any, allow: tuple[str, ...] = ()) -> str:
    problem = url_problem(url, allow)
    if problem:
        raise FetchError(problem)
    return url


@dataclass(frozen=True)
class Fetched:
    url: str  # where the bytes came from, after redirects
    size: int
    content_type: str | None


class _Watchdog:
    """Shuts a connection's socket down when the deadline passes, so that a blocked
    read (of headers or body, however slowly a server drips them) ends at once."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # closed already
                self._socket.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def fetch(url: str, out: BinaryIO, limits: Limits, max_bytes: int | None = None) -> Fetched:
    """Copy what ``url`` answers into ``out``, under ``limits``."""
    cap = limits.max_bytes if max_bytes is None else max_bytes
    deadline = time.monotonic() + limits.timeout
    watchdog = _Watchdog(deadline)
    first = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            problem = url_problem(url, limits.allow)
            if problem and url != first:
                raise FetchError(f"{first} redirects to a URL that may not be fetched: {problem}")
            if problem:
                raise FetchError(problem)
            connection = _connection(url, deadline, watchdog)
            try:
                response = _get(connection, url)
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise FetchError(f"{url} cannot be read: HTTP {response.status}")
                size = _copy(response, connection, out, cap, url, deadline, watchdog)
                return Fetched(url, size, response.headers.get("Content-Type"))
            finally:
                connection.close()
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")
    except (HTTPError, OSError) as exc:
        if watchdog.expired or time.monotonic() >= deadline:
            raise FetchError(f"{url} took longer than {limits.timeout:g} s") from None
        raise FetchError(f"{url} cannot be read: {_reason(exc)}") from None
    finally:
        watchdog.cancel()


def _connection(url: str, deadline: float, watchdog: _Watchdog) -> Any:
    """A connection to the very host urllib3's own parse of ``url`` names, watched."""
    parsed = parse_url(url)
    remaining = max(deadline - time.monotonic(), 0.001)
    connection_class = (
        urllib3.connection.HTTPSConnection
        if parsed.scheme.lower() == "https"
        else urllib3.connection.HTTPConnection
    )
    connection = connection_class(parsed.host.strip("[]"), parsed.port, timeout=remaining)
    connection.connect()
    watchdog.watch(connection.sock)
    return connection


def _get(connection: Any, url: str) -> Any:
    """One GET on ``connection``, not following redirects."""
    parsed = parse_url(url)
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if parsed.auth:
        headers.update(urllib3.util.make_headers(basic_auth=parsed.auth))
    connection.request("GET", parsed.request_uri, headers=headers, preload_content=False)
    return connection.getresponse()


def _copy(
    response: Any,
    connection: Any,
    out: BinaryIO,
    cap: int,
    url: str,
    deadline: float,
    watchdog: _Watchdog,
) -> int:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise FetchError(f"{url} is larger than {cap} bytes")
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or watchdog.expired:
            raise TimeoutError
        if connection.sock is not None:
            connection.sock.settimeout(remaining)
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            if watchdog.expired:  # the watchdog's shutdown reads as the end of the body
                raise TimeoutError
            return size
        size += len(chunk)
        if size > cap:
            raise FetchError(f"{url} is larger than {cap} bytes")
        out.write(chunk)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words (no addresses, no object reprs)."""
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "its host name does not resolve"
    while getattr(exc, "reason", None) is not None and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, OSError) and cause.strerror:
            return f"no connection ({cause.strerror.lower()})"
        return "no connection"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return exc.__class__.__name__


def fetch_to_file(url: str, path: Path, limits: Limits) -> Fetched:
    """Fetch ``url`` into a new file at ``path`` (never through a symbolic link)."""
    import os

    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "wb") as out:
        return fetch(url, out, limits)


def fetch_bytes(url: str, limits: Limits, max_bytes: int) -> bytes:
    import io

    buffer = io.BytesIO()
    fetch(url, buffer, limits, max_bytes=max_bytes)
    return buffer.getvalue()


# -- archives ---------------------------------------------------------------------------

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


def check_unpacked_size(path: Path, cap: int, label: str) -> None:
    """Refuse a zip or gzip file (xlsx and ods are zips) that unpacks to more than
    ``cap`` bytes; files that are neither pass as they are."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise FetchError(f"{label} is not a readable zip archive ({exc})") from None
        if len(members) > MAX_ZIP_MEMBERS:
            raise FetchError(f"{label} holds more than {MAX_ZIP_MEMBERS} files")
        unpacked = sum(member.file_size for member in members)
        if unpacked > cap:
            raise FetchError(f"{label} unpacks to more than {cap} bytes")
    elif magic[:2] == GZIP_MAGIC:
        unpacked = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    unpacked += len(chunk)
                    if unpacked > cap:
                        raise FetchError(f"{label} unpacks to more than {cap} bytes")
        except (OSError, EOFError, zlib.error) as exc:
            raise FetchError(f"{label} is not a readable gzip file ({exc})") from None
