"""Loopback helpers: free ports, waiting for a server, a tiny HTTP peer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server for {url} exited before answering")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


class FakeAuthService:
    """The auth service's public-key endpoint, at the HTTP level, on loopback.

    ``public_key_pem`` can be changed (key rotation) and ``up`` toggled
    (outage: the port stays bound but answers 503); ``requests`` counts fetches.
    """

    def __init__(self, public_key_pem: str) -> None:
        self.public_key_pem = public_key_pem
        self.up = True
        self.requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.requests += 1
                if self.path != "/auth/public-key":
                    self.send_error(404)
                    return
                if not service.up:
                    self.send_error(503)
                    return
                send(self, service.public_key_pem.encode("ascii"), "text/plain")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAuthService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class StaticFiles:
    """A folder served over HTTP on loopback (real files, fetched for real)."""

    def __init__(self, directory: str) -> None:
        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=directory, **kwargs)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StaticFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class RouteServer:
    """An HTTP server on a loopback ``address``: a GET of a path in ``routes`` is answered
    by its function, any other by 404; ``requests`` lists every path asked for."""

    def __init__(self, address: str, routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]):
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.route(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)  # (the client may give up, as it should)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self.host = f"{address}:{self._server.server_address[1]}"
        self.url = f"http://{self.host}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, path: str) -> Callable[[BaseHTTPRequestHandler], None] | None:
        return self.routes.get(path)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, content_type: str = "text/csv") -> None:
    """Answer 200 with ``body``."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FakeDashboard(RouteServer):
    """DPP's dashboard at the HTTP level, on loopback: ``api/raw/<pipeline id>`` answers
    ``records[id]`` as JSON, or DPP's 404 for a pipeline it does not know. ``hang`` makes
    it hold every request that long before answering (``slow``: the requests for those
    pipelines only); ``asked`` counts the requests."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", {})
        self.records: dict[str, dict] = {}
        self.hang = 0.0
        self.slow: dict[str, float] = {}

    @property
    def asked(self) -> int:
        return len(self.requests)

    def route(self, path: str) -> Callable[[BaseHTTPRequestHandler], None] | None:
        return self._answer if path.startswith("/api/raw/") else None

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        pipeline_id = handler.path.removeprefix("/api/raw/")
        time.sleep(self.slow.get(pipeline_id, self.hang))
        record = self.records.get(pipeline_id)
        if record is None:
            handler.send_error(404)
            return
        send(handler, json.dumps(record).encode(), "application/json")


class SlowData:
    """``/<tag>.csv``: ``rows`` rows naming ``tag``, one every tenth of a second."""

    def __init__(self, rows: int = 40) -> None:
        self.requests = 0
        data = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data.requests += 1
                tag = self.path.strip("/").removesuffix(".csv")
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.end_headers()
                try:
                    self.wfile.write(b"tag,number\n")
                    for number in range(rows):
                        self.wfile.write(f"{tag},{number}\n".encode())
                        self.wfile.flush()
                        time.sleep(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server of the tests' own, whose clients may go away mid-request
    (a sender killed, a fetch timed out) without a traceback on standard error."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass
