"""The one way specstore talks HTTP to other services: always with a timeout,
and with one clear error when the peer cannot be reached or answers badly."""

from __future__ import annotations

import requests


class PeerUnavailable(Exception):
    """The other service did not answer in time, or did not answer 2xx (``status``: the
    status it answered with; None when it did not answer). ``reached``: whether it took
    the connection (False: nothing answers there at all)."""

    def __init__(self, message: str, status: int | None = None, reached: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.reached = reached


class HttpClient:
    def __init__(self, timeout: float, session: requests.Session | None = None) -> None:
        self.timeout = timeout
        self._session = session or requests.Session()

    def answers(self, url: str) -> bool:
        """Whether anything answers HTTP at ``url`` in time (any status)."""
        try:
            self._session.get(url, timeout=self.timeout).close()
        except requests.RequestException:
            return False
        return True

    def get(self, url: str) -> requests.Response:
        """GET ``url``; raise :class:`PeerUnavailable` unless it answers 2xx in time."""
        try:
            response = self._session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            reached = not isinstance(exc, requests.ConnectionError) or isinstance(
                exc, requests.ReadTimeout
            )
            raise PeerUnavailable(
                f"GET {url} failed ({exc.__class__.__name__})", reached=reached
            ) from exc
        if not response.ok:
            status = response.status_code
            raise PeerUnavailable(f"GET {url} answered {status}", status)
        return response
