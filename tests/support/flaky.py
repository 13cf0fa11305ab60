"""A source server on loopback that fails the way real ones do, on cue: each path answers
from a script (an HTTP status with headers and a body, or a connection closed without an
answer), the last answer repeated once the script runs out; files served whole carry an
ETag and a Last-Modified and answer 304 to a request that names them."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.net import QuietHTTPServer
from tests.support.pipelines import EXAMPLE_DATA

RESET = "reset"  # an answer: the connection closed before a byte of one


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One request the server took: when (``time.monotonic()``), and its headers."""

    at: float
    headers: dict[str, str]


def file_answer(body: bytes, modified: float = 1_700_000_000.0) -> Answer:
    """``body`` as a static file server sends it: with an ETag (its hash) and the time it
    was last modified."""
    return Answer(
        200,
        body,
        {
            "Content-Type": "text/csv",
            "ETag": f'"{hashlib.sha256(body).hexdigest()[:16]}"',
            "Last-Modified": email.utils.formatdate(modified, usegmt=True),
        },
    )


class FlakyServer:
    def __init__(self) -> None:
        self._scripts: dict[str, list[Answer | str]] = {}
        self.seen: dict[str, list[Seen]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.seen.setdefault(path, []).append(
                        Seen(time.monotonic(), dict(self.headers.items()))
                    )
                    script = server._scripts.get(path) or [Answer(404, b"not here")]
                    answer = script.pop(0) if len(script) > 1 else script[0]
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    if answer == RESET:
                        # An RST, not a FIN: what a server that crashed mid-request sends.
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                        )
                        self.close_connection = True
                        return
                    assert isinstance(answer, Answer)
                    if answer.status == 200 and _not_modified(self.headers, answer.headers):
                        self.send_response(304)
                        for name in ("ETag", "Last-Modified"):
                            self.send_header(name, answer.headers[name])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def script(self, path: str, *answers: Answer | str) -> None:
        """What ``path`` answers from now on, in turn (the last one for ever after)."""
        with self._lock:
            self._scripts[path] = list(answers)
            self.seen[path] = []

    def requests(self, path: str) -> int:
        return len(self.seen.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _not_modified(request: object, headers: dict[str, str]) -> bool:
    """Whether a request's conditional headers name what ``headers`` describe."""
    etag = request.get("If-None-Match")  # type: ignore[attr-defined]
    if etag is not None:
        return headers.get("ETag") in [tag.strip() for tag in etag.split(",")]
    since = request.get("If-Modified-Since")  # type: ignore[attr-defined]
    if since is not None and "Last-Modified" in headers:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(
                headers["Last-Modified"]
            ) <= email.utils.parsedate_to_datetime(since)
    return False


# The example's spreadsheet as a server with no validators sends it (no ETag, no
# Last-Modified: a later request can only be compared by the bytes).
XLSX = Answer(
    200,
    (EXAMPLE_DATA / "population.xlsx").read_bytes(),
    {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
)
