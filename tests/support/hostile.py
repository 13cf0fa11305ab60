"""Servers an attacker would set up, on loopback, for real.

* :class:`Internal`: the "internal" service an uploader must never reach, on a second
  loopback address (127.0.0.2); it serves a secret and counts every request.
* :class:`Hostile`: a server on an allowed host (127.0.0.1) that serves data packages
  pointing elsewhere, redirects to the internal service, drips bytes, and serves
  archives that unpack to far more than they weigh.
"""

from __future__ import annotations

import gzip
import io
import json
import secrets
import time
import zipfile
from http.server import BaseHTTPRequestHandler
from typing import Any

from .net import RouteServer, send

INTERNAL_ADDRESS = "127.0.0.2"
BOMB_BYTES = 30 * 1024 * 1024


class Internal(RouteServer):
    """The internal service: ``/secret.csv`` holds :attr:`secret`."""

    def __init__(self) -> None:
        self.secret = f"SECRET-{secrets.token_hex(8)}"
        body = f"name,value\nsecret,{self.secret}\n".encode()
        super().__init__(INTERNAL_ADDRESS, {"/secret.csv": lambda handler: send(handler, body)})


def zip_bomb(member: str) -> bytes:
    """A small zip holding one member of ``BOMB_BYTES`` bytes (a CSV's rows)."""
    buffer = io.BytesIO()
    row = b"1,2,3,4,5,6,7,8,9\n"
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(member, "w") as out,
    ):
        out.write(b"a,b,c,d,e,f,g,h,i\n")
        chunk = row * (1024 * 1024 // len(row))
        for _ in range(BOMB_BYTES // len(chunk)):
            out.write(chunk)
    return buffer.getvalue()


def gzip_bomb() -> bytes:
    row = b"1,2,3,4,5,6,7,8,9\n"
    chunk = row * (1024 * 1024 // len(row))
    return gzip.compress(b"a,b,c,d,e,f,g,h,i\n" + chunk * (BOMB_BYTES // len(chunk)))


class Hostile(RouteServer):
    """An allowed host serving what an attacker would."""

    def __init__(self, internal: Internal) -> None:
        self.internal = internal
        self.benign = b"country,year\nFrance,2019\n"
        self.zip_bomb = zip_bomb("bomb.csv")
        self.xlsx_bomb = zip_bomb("xl/worksheets/sheet1.xml")
        self.gzip_bomb = gzip_bomb()
        routes = {
            "/data.csv": lambda handler: send(handler, self.benign),
            "/passwd.csv": lambda handler: send(handler, self.benign),
            "/nested/datapackage.json": lambda handler: send(
                handler, json.dumps(self.nested()).encode(), "application/json"
            ),
            "/redirect.csv": self._redirect,
            "/drip.csv": self._drip,
            "/bomb.csv": lambda handler: send(handler, self.zip_bomb, "application/zip"),
            "/bomb.xlsx": lambda handler: send(handler, self.xlsx_bomb, "application/zip"),
            "/bomb.csv.gz": lambda handler: send(handler, self.gzip_bomb, "application/gzip"),
        }
        super().__init__("127.0.0.1", routes)
        self.packages: dict[str, dict[str, Any]] = {}
        self.routes["/datapackage.json"] = self._package

    def nested(self) -> dict[str, Any]:
        """A data package whose resources are everything an uploader must not reach."""
        return {
            "name": "nested",
            "resources": [
                {"name": "passwd", "path": "file:///etc/passwd", "format": "csv"},
                {"name": "environ", "path": "file:///proc/self/environ", "format": "csv"},
                {"name": "secret", "path": self.internal.url + "secret.csv", "format": "csv"},
                {"name": "escape", "path": "../../../../../escape.csv", "format": "csv"},
            ],
        }

    def serve_package(self, descriptor: dict[str, Any]) -> str:
        """Serve ``descriptor`` as ``/datapackage.json``; its URL."""
        self.packages["current"] = descriptor
        return self.url + "datapackage.json"

    def _package(self, handler: BaseHTTPRequestHandler) -> None:
        send(handler, json.dumps(self.packages["current"]).encode(), "application/json")

    def _redirect(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", self.internal.url + "secret.csv")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _drip(self, handler: BaseHTTPRequestHandler) -> None:
        """One row a second, for a minute: each read is quick, the whole never ends."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        handler.end_headers()
        handler.wfile.write(b"country,year\n")
        for _ in range(60):
            handler.wfile.write(b"France,2019\n")
            handler.wfile.flush()
            time.sleep(1)
