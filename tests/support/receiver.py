"""A receiver of specstore's announcements, as a hub's service would write one: a real HTTP
server on loopback that checks each request's signature with nothing but the documented
scheme (docs/reference/announcements.md) and keeps what it was sent; it answers from a script
(a status, or "slow": no answer for a minute), the last answer repeated."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.net import QuietHTTPServer

SLOW = "slow"
# The secret the tests' specstores sign announcements with.
ANNOUNCE_SECRET = "announce-secret-for-tests"


def signature_holds(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """The documented check: ``t=<unix time>,v1=<hex>``, where the hex is the HMAC-SHA256,
    keyed by the secret, of the time, a dot and the body; and the time recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp = fields.get("t", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields.get("v1", ""))


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    signed: bool  # whether the signature held
    answered: int | str

    @property
    def announcement(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    def __init__(self, secret: str, *answers: int | str) -> None:
        self.secret = secret
        self._answers: list[int | str] = list(answers) or [204]
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                header = self.headers.get("Specstore-Signature", "")
                with receiver._lock:
                    answer = (
                        receiver._answers.pop(0)
                        if len(receiver._answers) > 1
                        else receiver._answers[0]
                    )
                    receiver.received.append(
                        Received(
                            dict(self.headers.items()),
                            body,
                            signature_holds(receiver.secret, header, body),
                            answer,
                        )
                    )
                if answer == SLOW:
                    time.sleep(60)
                    return
                status = int(answer)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                reply = b"the receiver's own words, never to be shown"
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/announcements"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, *answers: int | str) -> None:
        """What the receiver answers from now on, in turn (the last one for ever after)."""
        with self._lock:
            self._answers = list(answers)

    def taken(self) -> list[dict[str, Any]]:
        """The announcements it took (answered 2xx), signature checked."""
        with self._lock:
            return [
                one.announcement
                for one in self.received
                if isinstance(one.answered, int) and 200 <= one.answered < 300 and one.signed
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
