"""Fetching what a spec names, by one policy, wherever a pipeline runs.

Every URL a spec or a data package gives is untrusted. This module is the only
code that reads one, in specstore's API process and in both engines (the embedded
runner and DPP run the same ``specstore.load`` step), so one policy holds everywhere:

* **Parsed once, the way it is fetched.** A URL is parsed by urllib3's parser, and
  the connection goes to exactly the host that parse found. Anything two parsers
  could read differently (a backslash, white space, control characters, a host that
  Python's ``urlsplit`` reads otherwise) is refused outright.
* **Only http and https**, only to hosts the allow-list admits (shell-style
  patterns; an empty list admits any host) and to the ports it admits, checked again
  at every redirect.
* **Checked where the connection goes.** The host name is resolved here, once per
  connection, and every address it resolves to must be a public one: loopback,
  private, link-local (cloud metadata services among them), shared, multicast,
  unspecified and reserved addresses are refused unless a network the operator names
  admits them. The connection then goes to an address just checked, so a name that
  resolves otherwise a moment later (DNS rebinding) gains nothing.
* **Limits that hold against hostile servers:** a wall-clock deadline for the whole
  download, redirects and headers included (a watchdog shuts the socket down when it
  passes, however slowly the server drips bytes), and a cap on the bytes received.
* **Transient failures retried:** a connection refused or reset, no answer within the
  timeout, or HTTP 429, 500, 502, 503 or 504, before a byte of the body arrived, is tried
  again (``Limits.retries`` times) after an exponential backoff with jitter, or after the
  server's ``Retry-After``, by urllib3's ``Retry``, as long as the wait ends before the
  run's deadline; each retry is logged with its reason. Other answers, a refused URL or
  address and a file over the limits are final at once.
* **What was fetched, said:** the server's validators (``ETag``, ``Last-Modified``) and
  the SHA-256 of the bytes, for a conditional request next time (:mod:`.sources`).
* **Archives are measured before anything unpacks them:** a zip (xlsx and ods are
  zips) by its central directory, which Python's ``zipfile`` never reads past, and a
  gzip stream by decompressing it once with a counter, so a small bomb cannot fill
  the disk or the memory of whatever parses it.

It needs only the standard library and urllib3, so it runs in specstore's
virtualenv and in DPP's alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import gzip
import hashlib
import ipaddress
import logging
import socket
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, LocationParseError, MaxRetryError
from urllib3.util import Retry, parse_url

SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
CHUNK_BYTES = 64 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
MAX_ZIP_MEMBERS = 10_000
USER_AGENT = "specstore"
# Answers that say "not now" rather than "no": tried again.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# The longest wait the backoff makes between two tries (a server's Retry-After is
# waited for as long as the deadline allows).
MAX_RETRY_WAIT = 60.0
log = logging.getLogger("specstore")
# Characters no URL of ours needs and two parsers may read differently.
_REFUSED = frozenset("\\ \t\r\n\x7f") | frozenset(chr(code) for code in range(32))


class FetchError(Exception):
    """The URL may not be fetched, or fetching it failed; the message says why, once."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Names that always mean this machine (RFC 6761), refused without a look-up.
LOCAL_NAMES = ("localhost", "localhost.")
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64's), judged by it.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Limits:
    """The policy a fetch runs under: which hosts, addresses and ports, how long, how much."""

    allow: tuple[str, ...] = ()
    timeout: float = 60.0
    max_bytes: int = 100 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    # Networks (CIDR) a connection may go to although they are not public, e.g.
    # ``127.0.0.1/32`` for a data server on this machine.
    allow_networks: tuple[str, ...] = ()
    # Ports a URL may name (``443``, ``8000-8099``); empty: any.
    ports: tuple[str, ...] = ()
    # How many times a transiently failed fetch is tried again, and the backoff factor
    # (seconds): the waits are 0, 2, 4, 8... times it, with up to as much again at random.
    retries: int = 3
    backoff: float = 1.0

    def as_parameters(self) -> dict[str, Any]:
        """The limits as a plan carries them to the step that fetches."""
        return {
            **asdict(self),
            "allow": list(self.allow),
            "allow_networks": list(self.allow_networks),
            "ports": list(self.ports),
        }

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any] | None) -> Limits:
        given = dict(parameters or {})
        given["allow"] = tuple(str(pattern).lower() for pattern in given.get("allow") or ())
        given["allow_networks"] = tuple(str(net) for net in given.get("allow_networks") or ())
        given["ports"] = tuple(str(port) for port in given.get("ports") or ())
        return cls(**given)


def parse_networks(
    values: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``values`` as networks (a bare address is a network of one); ValueError names the
    one that is not."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def parse_ports(values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """``values`` (``443``, ``8000-8099``) as inclusive ranges; ValueError names the one
    that is not a port or a range of ports."""
    ranges = []
    for value in values:
        first, _, last = value.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"{value!r} is not a port or a range of ports") from None
        if not 0 < low <= high <= 65535:
            raise ValueError(f"{value!r} is not a port or a range of ports (1-65535)")
        ranges.append((low, high))
    return tuple(ranges)


@functools.lru_cache(maxsize=64)
def _networks(values: tuple[str, ...]) -> tuple[Any, ...]:
    return parse_networks(values)


@functools.lru_cache(maxsize=64)
def _ports(values: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    return parse_ports(values)


def address_kind(address: IPAddress) -> str | None:
    """What kind of address ``address`` is when it is not a public one (``loopback``,
    ``private``...), else None. An IPv6 address that carries an IPv4 one (mapped, NAT64)
    is judged by the IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-public"  # the shared address space (100.64.0.0/10), say
    return None


def _address_problem(host: str, address: IPAddress, limits: Limits) -> str | None:
    kind = address_kind(address)
    if kind is None or any(address in network for network in _networks(limits.allow_networks)):
        return None
    # The address itself is not told: what an internal name resolves to is not the
    # uploader's to learn.
    where = f"the host {host!r} resolves to" if _literal(host) is None else f"{host} is"
    return f"{where} a {kind} address, which inputs may not be fetched from (INPUT_ADDRESS_ALLOW)"


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def url_problem(url: Any, limits: Limits | None = None) -> str | None:
    """Why ``url`` may not be fetched under ``limits``, or None when it may, as far as can
    be told without the network: the address a host name resolves to is checked when it
    is fetched."""
    if not isinstance(url, str) or not url:
        return f"{url!r} is not a URL"
    return _string_url_problem(url, limits or Limits())


# An upload checks each of its URLs more than once (the spec's, then as resources are
# planned); the answer depends on the text and the policy alone.
@functools.lru_cache(maxsize=1024)
def _string_url_problem(url: str, limits: Limits) -> str | None:
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
    if limits.allow and not any(fnmatch.fnmatchcase(host, pattern) for pattern in limits.allow):
        return f"the host {host!r} is not allowed (INPUT_URL_ALLOW)"
    port = parsed.port or DEFAULT_PORTS[scheme]
    if limits.ports and not any(low <= port <= high for low, high in _ports(limits.ports)):
        return f"the port {port} of {url!r} is not allowed (INPUT_PORTS)"
    literal = _literal(host)
    if literal is None and (host in LOCAL_NAMES or host.endswith(".localhost")):
        literal = ipaddress.IPv4Address("127.0.0.1")  # what the name always means
        problem = _address_problem(host, literal, limits)
        return problem and problem.replace(f"the host {host!r} resolves to", f"{host} is")
    if literal is not None:
        return _address_problem(host, literal, limits)
    return None


def check_url(url: Any, limits: Limits | None = None) -> str:
    problem = url_problem(url, limits)
    if problem:
        raise FetchError(problem)
    return url


@dataclass(frozen=True)
class Fetched:
    url: str  # where the bytes came from, after redirects
    size: int
    content_type: str | None
    retries: int = 0  # how many times it was tried again
    # What the server said of the version it sent (its validators, for a conditional
    # request next time), and the SHA-256 of the bytes received.
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    # The answer to a conditional request was 304: nothing was sent, nothing changed.
    not_modified: bool = False


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


class _Transient(Exception):
    """An attempt failed before a byte of the body arrived, for a reason worth another
    try: ``response`` (an answer in TRANSIENT_STATUSES) or ``error``."""

    def __init__(self, reason: str, response: Any = None, error: Exception | None = None):
        super().__init__(reason)
        self.reason, self.response, self.error = reason, response, error


def fetch(
    url: str,
    out: BinaryIO,
    limits: Limits,
    max_bytes: int | None = None,
    deadline: float | None = None,
    conditions: Mapping[str, str] | None = None,
) -> Fetched:
    """Copy what ``url`` answers into ``out``, under ``limits``: each try within
    ``limits.timeout``, and every try and wait before ``deadline`` (the run's, as
    ``time.time()``; None: the first try's timeout is the whole fetch's). ``conditions``:
    the headers of a conditional request (``If-None-Match``, ``If-Modified-Since``); a
    304 answer to it is :attr:`Fetched.not_modified`, with nothing written."""
    cap = limits.max_bytes if max_bytes is None else max_bytes
    now = time.monotonic()
    end = now + limits.timeout if deadline is None else now + max(deadline - time.time(), 0.0)
    retry = Retry(
        total=limits.retries,
        redirect=False,
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=limits.backoff,
        backoff_jitter=limits.backoff,
        backoff_max=MAX_RETRY_WAIT,
    )
    tries = 1
    while True:
        try:
            until = min(time.monotonic() + limits.timeout, end)
            fetched = _attempt(url, out, limits, cap, until, conditions or {})
            return dataclasses.replace(fetched, retries=tries - 1)
        except _Transient as failed:
            try:
                retry = retry.increment("GET", url, response=failed.response, error=failed.error)
            except MaxRetryError:
                raise FetchError(_after(failed.reason, tries)) from None
            asked = retry.get_retry_after(failed.response) if failed.response else None
            wait = asked if asked is not None else retry.get_backoff_time()
            if time.monotonic() + wait >= end:
                raise FetchError(_after(failed.reason, tries, "no time left for another")) from None
            log.warning(
                "%s; retry %d of %d in %.1f s%s",
                failed.reason,
                tries,
                limits.retries,
                wait,
                " (Retry-After)" if asked is not None else "",
            )
            time.sleep(wait)
            tries += 1


def _attempt(
    url: str,
    out: BinaryIO,
    limits: Limits,
    cap: int,
    deadline: float,
    conditions: Mapping[str, str],
) -> Fetched:
    """One try at ``url``, redirects followed, by ``deadline`` (``time.monotonic()``):
    :class:`_Transient` when it may be tried again."""
    watchdog = _Watchdog(deadline)
    first = url
    started = False  # whether a byte of the body may have reached ``out``
    try:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                check_url(url, limits)
                connection = _connection(url, deadline, watchdog, limits)
            except FetchError as exc:
                if url == first:
                    raise
                raise FetchError(
                    f"{first} redirects to a URL that may not be fetched: {exc}"
                ) from None
            try:
                response = _get(connection, url, conditions)
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status in TRANSIENT_STATUSES:
                    raise _Transient(f"{url} cannot be read: HTTP {response.status}", response)
                validators = {
                    "etag": response.headers.get("ETag"),
                    "last_modified": response.headers.get("Last-Modified"),
                }
                if response.status == 304 and conditions:
                    return Fetched(url, 0, None, not_modified=True, **validators)
                if response.status != 200:
                    raise FetchError(f"{url} cannot be read: HTTP {response.status}")
                started = True
                size, digest = _copy(
                    response, connection, out, url, cap, limits, deadline, watchdog
                )
                content_type = response.headers.get("Content-Type")
                return Fetched(url, size, content_type, sha256=digest, **validators)
            finally:
                connection.close()
        raise FetchError(f"{url} redirects more than {MAX_REDIRECTS} times")
    except (HTTPError, OSError) as exc:
        timed_out = watchdog.expired or time.monotonic() >= deadline
        if timed_out:
            reason = f"{url} took longer than {limits.timeout:g} s"
        else:
            reason = f"{url} cannot be read: {connection_failure(exc)}"
        if started:
            raise FetchError(reason) from None
        raise _Transient(reason, error=exc) from None
    finally:
        watchdog.cancel()


def _after(reason: str, tries: int, why_not_again: str = "") -> str:
    """Why a fetch failed, and how many tries it took (when more than one)."""
    if tries == 1:
        return reason
    return f"{reason} (tried {tries} times{'; ' + why_not_again if why_not_again else ''})"


def _connection(url: str, deadline: float, watchdog: _Watchdog, limits: Limits) -> Any:
    """A connection to an address of the host urllib3's own parse of ``url`` names, each of
    its addresses checked first (see :func:`resolve`), watched. The request still names
    the host (``Host``, and TLS's server name and certificate check)."""
    parsed = parse_url(url)
    host = parsed.host.strip("[]")
    port = parsed.port or DEFAULT_PORTS[parsed.scheme.lower()]
    https = parsed.scheme.lower() == "https"
    failure: OSError | None = None
    for address in resolve(host, port, limits):
        remaining = max(deadline - time.monotonic(), 0.001)
        if https:
            connection = urllib3.connection.HTTPSConnection(
                str(address), port, timeout=remaining, server_hostname=host, assert_hostname=host
            )
        else:
            connection = urllib3.connection.HTTPConnection(str(address), port, timeout=remaining)
        try:
            connection.connect()
        except OSError as exc:  # urllib3's connection errors are OSErrors
            connection.close()
            failure = exc
            if time.monotonic() >= deadline:
                break
            continue
        connection.specstore_host = _host_header(host, parsed.port)
        watchdog.watch(connection.sock)
        return connection
    assert failure is not None  # resolve answers at least one address
    raise failure


def _host_header(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return f"{name}:{port}" if port else name


def resolve(host: str, port: int, limits: Limits) -> list[IPAddress]:
    """The addresses ``host`` resolves to, each checked against the policy: a host with one
    address that is refused is refused whole (a name that mixes public and internal
    addresses is not one to trust)."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise FetchError(f"the host {host!r} does not resolve") from None
        addresses = []
        for *_, sockaddr in found:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    for address in addresses:
        problem = _address_problem(host, address, limits)
        if problem:
            raise FetchError(problem)
    return addresses


def _get(connection: Any, url: str, conditions: Mapping[str, str]) -> Any:
    """One GET on ``connection``, not following redirects."""
    parsed = parse_url(url)
    headers = {
        "Host": connection.specstore_host,
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
        **conditions,
    }
    if parsed.auth:
        headers.update(urllib3.util.make_headers(basic_auth=parsed.auth))
    connection.request("GET", parsed.request_uri, headers=headers, preload_content=False)
    return connection.getresponse()


def _copy(
    response: Any,
    connection: Any,
    out: BinaryIO,
    url: str,
    cap: int,
    limits: Limits,
    deadline: float,
    watchdog: _Watchdog,
) -> tuple[int, str]:
    """The body into ``out``, at most ``cap`` bytes: its size and its SHA-256."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise FetchError(_too_large(url, cap, limits))
    size = 0
    digest = hashlib.sha256()
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
            return size, digest.hexdigest()
        size += len(chunk)
        if size > cap:
            raise FetchError(_too_large(url, cap, limits))
        digest.update(chunk)
        out.write(chunk)


def _too_large(url: str, cap: int, limits: Limits) -> str:
    """Why a download stopped at ``cap`` bytes, naming the setting when it is its limit."""
    if cap == limits.max_bytes:
        return (
            f"{url} is larger than {cap} bytes, the most this server downloads (DOWNLOAD_MAX_BYTES)"
        )
    return f"{url} is larger than {cap} bytes"


def connection_failure(exc: BaseException) -> str:
    """Why a connection failed, in a few words (no addresses, no object reprs)."""
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


def fetch_to_file(url: str, path: Path, limits: Limits, deadline: float | None = None) -> Fetched:
    """Fetch ``url`` into a new file at ``path`` (never through a symbolic link)."""
    import os

    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "wb") as out:
        return fetch(url, out, limits, deadline=deadline)


def fetch_bytes(url: str, limits: Limits, max_bytes: int) -> bytes:
    import io

    buffer = io.BytesIO()
    fetch(url, buffer, limits, max_bytes=max_bytes)
    return buffer.getvalue()


# -- archives ---------------------------------------------------------------------------

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
# The end of a zip's central directory: its record, and the Zip64 one's locator before it.
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_MAX_ZIP_COMMENT = 65535
# How large a zip's central directory may be: what MAX_ZIP_MEMBERS entries with names of
# a few hundred bytes take. It is all that zipfile parses before anything is unpacked.
MAX_ZIP_DIRECTORY_BYTES = 8 * 1024 * 1024


def zip_directory(path: Path) -> tuple[int, int] | None:
    """How many entries a zip's central directory says it holds, and its size in bytes,
    read from the record at its end (None: there is none, so no zip reader reads it as a
    zip). The record is found wherever the archive starts: zip readers (Python's zipfile,
    and openpyxl with it) read an archive behind bytes of any other kind too."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        start = max(size - _EOCD.size - _MAX_ZIP_COMMENT, 0)
        handle.seek(start)
        tail = handle.read()
        at = tail.rfind(_EOCD_SIGNATURE)
        if at < 0 or len(tail) - at < _EOCD.size:
            return None
        _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
        if entries != 0xFFFF and directory_bytes != 0xFFFFFFFF:
            return entries, directory_bytes
        # Zip64: the locator just before the record says where the Zip64 record is.
        located = start + at - _ZIP64_LOCATOR.size
        if located < 0:
            return entries, directory_bytes
        handle.seek(located)
        signature, _, offset, _ = _ZIP64_LOCATOR.unpack(handle.read(_ZIP64_LOCATOR.size))
        if signature != b"PK\x06\x07":
            return entries, directory_bytes
        # Where it is, counted from the archive's start (any bytes before it shift it).
        record = located - _ZIP64_EOCD.size
        handle.seek(record if record >= 0 else offset)
        found = _ZIP64_EOCD.unpack(handle.read(_ZIP64_EOCD.size))
        if found[0] != b"PK\x06\x06":
            return entries, directory_bytes
        return found[7], found[8]


def check_unpacked_size(path: Path, cap: int, label: str) -> None:
    """Refuse a zip or gzip file (xlsx and ods are zips) that unpacks to more than
    ``cap`` bytes, or a zip of more than ``MAX_ZIP_MEMBERS`` files; files that are
    neither pass as they are. A zip's directory is measured by the record at its end
    before any of it is parsed."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    directory = zip_directory(path)
    if directory is not None:
        entries, directory_bytes = directory
        if entries > MAX_ZIP_MEMBERS:
            raise FetchError(f"{label} holds more than {MAX_ZIP_MEMBERS} files")
        if directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
            raise FetchError(f"{label} has a directory larger than {MAX_ZIP_DIRECTORY_BYTES} bytes")
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            if magic != ZIP_MAGIC:
                return  # not a zip after all: no zip reader reads it as one either
            raise FetchError(f"{label} is not a readable zip archive ({exc})") from None
        if len(members) > MAX_ZIP_MEMBERS:
            raise FetchError(f"{label} holds more than {MAX_ZIP_MEMBERS} files")
        unpacked = sum(member.file_size for member in members)
        if unpacked > cap:
            raise FetchError(f"{label} unpacks to more than {cap} bytes (UNPACKED_MAX_BYTES)")
    elif magic == ZIP_MAGIC:
        raise FetchError(f"{label} is not a readable zip archive (it has no directory)")
    elif magic[:2] == GZIP_MAGIC:
        unpacked = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    unpacked += len(chunk)
                    if unpacked > cap:
                        raise FetchError(
                            f"{label} unpacks to more than {cap} bytes (UNPACKED_MAX_BYTES)"
                        )
        except (OSError, EOFError, zlib.error) as exc:
            raise FetchError(f"{label} is not a readable gzip file ({exc})") from None
