"""Fetching what specs point at (data packages, resources), within limits.

Only http and https; when ``INPUT_URL_ALLOW`` lists host patterns, only those
hosts, checked again at every redirect so a permitted host cannot bounce the
server to an internal address; at most ``max_bytes`` per download, and no
longer than ``timeout`` seconds in all.
"""

from __future__ import annotations

import fnmatch
import io
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024


class DownloadError(Exception):
    """The URL may not be fetched, or fetching it failed; the message says why."""


class UrlPolicy:
    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = tuple(pattern.lower() for pattern in allow)

    def problem(self, url: str) -> str | None:
        """Why ``url`` may not be fetched, or None when it may."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return f"{url!r} is not a valid URL"
        if parts.scheme.lower() not in ("http", "https"):
            return f"only http and https URLs can be fetched, not {url!r}"
        if not host:
            return f"{url!r} has no host"
        if self.allow and not any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allow):
            return f"the host {host!r} is not allowed (INPUT_URL_ALLOW)"
        return None


class Downloader:
    def __init__(
        self,
        policy: UrlPolicy,
        timeout: float,
        max_bytes: int,
        session: requests.Session | None = None,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._session = session or requests.Session()

    def _copy(self, url: str, out: BinaryIO, max_bytes: int) -> int:
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            problem = self.policy.problem(url)
            if problem:
                raise DownloadError(problem)
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                response = self._session.get(
                    url, stream=True, allow_redirects=False, timeout=min(remaining, self.timeout)
                )
            except requests.RequestException as exc:
                raise DownloadError(f"{url} cannot be read: {exc.__class__.__name__}") from exc
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if not response.ok:
                    raise DownloadError(f"{url} cannot be read: HTTP {response.status_code}")
                size = 0
                try:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        size += len(chunk)
                        if size > max_bytes:
                            raise DownloadError(f"{url} is larger than {max_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise DownloadError(f"{url} took longer than {self.timeout:g} s")
                        out.write(chunk)
                except requests.RequestException as exc:
                    raise DownloadError(f"{url} cannot be read: {exc.__class__.__name__}") from exc
                return size
        raise DownloadError(f"{url} redirects more than {MAX_REDIRECTS} times")

    def get_bytes(self, url: str, max_bytes: int | None = None) -> bytes:
        buffer = io.BytesIO()
        self._copy(url, buffer, max_bytes or self.max_bytes)
        return buffer.getvalue()

    def to_file(self, url: str, path: Path) -> int:
        with path.open("wb") as out:
            return self._copy(url, out, self.max_bytes)
