"""Announcements: every revision's end told to the operator's receivers (``ANNOUNCE_URLS``).

Each server process runs an announcer, a loop in the background, never in a request:

1. revisions that ended and are not announced yet become one announcement per receiver,
   in the database (:mod:`specstore.store.announcements`: an outbox, so that a restart,
   a crash or a receiver that is down for hours loses nothing);
2. announcements that are due are leased to this process (no two deliver one at once),
   POSTed, and recorded: delivered on a 2xx answer; otherwise tried again after an
   exponential backoff with jitter, until ``ANNOUNCE_ATTEMPTS`` attempts, then given up
   (kept, counted and logged). A receiver's answer body is never read.

Delivery is at least once: a receiver tells repeats apart by the body's ``id``.

Each request is signed with ``ANNOUNCE_SECRET``: the ``Specstore-Signature`` header is
``t=<unix time>,v1=<hex HMAC-SHA256 of "<unix time>." followed by the body>``, which a
receiver checks in a few lines (docs/reference/announcements.md) and whose time it may bound to
refuse replays.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import urllib3
from datapackage_pipelines_specstore.fetch import connection_failure

from ..events import FAILED
from ..metrics import count_announcement
from ..store.announcements import Announcements, Delivery, EndedRevision
from ..store.records import flow_id, superseded_by
from .engine import Periodic

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Specstore-Signature"
ID_HEADER = "Specstore-Announcement"
USER_AGENT = "specstore"
POLL_SECONDS = 2.0
# The longest wait between two attempts at one announcement.
MAX_WAIT_SECONDS = 15 * 60.0
# Receivers delivered to at once.
SENDERS = 4
SUPERSEDED = "superseded"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Specstore-Signature`` header of ``body`` sent at ``timestamp``."""
    digest = hmac.new(
        secret.encode("utf-8"), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def body_of(ended: EndedRevision) -> str:
    """What an announcement says of a revision that ended (JSON text)."""
    newer = superseded_by(ended.errors) if ended.state == FAILED else None
    publication = (ended.stats or {}).get("publication") or {}
    body = {
        "id": uuid.uuid4().hex,
        "type": "revision.ended",
        "dataset": f"{ended.owner_id}/{ended.dataset}",
        "ownerid": ended.owner_id,
        "name": ended.dataset,
        "revision": ended.revision,
        "flowid": flow_id(ended.owner_id, ended.dataset, ended.revision),
        "state": SUPERSEDED if newer is not None else ended.state,
        "trigger": ended.trigger,
        "findability": ended.findability,
        "errors": list(ended.errors or []),
        "stats": {key: value for key, value in (ended.stats or {}).items() if key != "publication"},
        "datapackage_url": publication.get("datapackage_url"),
        "created": ended.created.isoformat(),
        "ended": (ended.ended or ended.modified).isoformat(),
    }
    if newer is not None:
        body["superseded_by"] = newer
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def backoff(attempts: int, base: float) -> float:
    """Seconds before attempt ``attempts + 1``: ``base`` doubled for each attempt made,
    at most MAX_WAIT_SECONDS, between half and all of it at random (so that receivers
    coming back are not met by every process at once)."""
    return min(MAX_WAIT_SECONDS, base * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)  # noqa: S311


class Announcer:
    def __init__(
        self,
        announcements: Announcements,
        receivers: Sequence[str],
        secret: str | None,
        attempts: int = 20,
        timeout: float = 10.0,
        backoff_seconds: float = 1.0,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.announcements = announcements
        self.receivers = tuple(receivers)
        self.secret = secret or ""
        self.attempts = attempts
        self.timeout = timeout
        self.backoff_seconds = backoff_seconds
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._http = urllib3.PoolManager(
            num_pools=max(len(self.receivers), 1),
            maxsize=SENDERS,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            headers={"User-Agent": USER_AGENT},
        )
        self._stale_marked = False
        self._loop = Periodic("specstore-announcer", poll_seconds, self.tick)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        self._http.clear()

    def tick(self) -> tuple[int, int]:
        """One round: what ended queued, what is due delivered. (How many revisions were
        queued, how many announcements delivered.)"""
        if not self._stale_marked:
            self.announcements.mark_stale()
            self._stale_marked = True
        queued = self.announcements.queue(self.receivers, body_of)
        if not self.receivers:
            return queued, 0
        delivered = 0
        while taken := self.announcements.take(self.owner, self.timeout + 30.0):
            with concurrent.futures.ThreadPoolExecutor(SENDERS) as senders:
                delivered += sum(senders.map(self._deliver, taken))
            if self._loop.stopping.is_set():
                break
        return queued, delivered

    def _deliver(self, delivery: Delivery) -> bool:
        error = self._post(delivery)
        if error is None:
            count_announcement("delivered")
            self.announcements.attempted(delivery, self.owner, None, None)
            return True
        made = delivery.attempts + 1
        if made >= self.attempts:
            count_announcement("given_up")
            log.error(
                "announcement %d to %s given up after %d attempts: %s",
                delivery.row_id,
                delivery.receiver,
                made,
                error,
            )
            self.announcements.attempted(delivery, self.owner, error, None)
            return False
        count_announcement("failed")
        wait = backoff(made, self.backoff_seconds)
        log.warning(
            "announcement %d to %s: %s; attempt %d of %d in %.0f s",
            delivery.row_id,
            delivery.receiver,
            error,
            made + 1,
            self.attempts,
            wait,
        )
        self.announcements.attempted(delivery, self.owner, error, wait)
        return False

    def _post(self, delivery: Delivery) -> str | None:
        """POST the announcement; None when the receiver took it (2xx), else why not, in
        a few words of specstore's."""
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self.secret, int(self.clock()), body),
            ID_HEADER: str(json.loads(delivery.body).get("id", "")),
        }
        try:
            response = self._http.request(
                "POST",
                delivery.receiver,
                body=body,
                headers=headers,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except urllib3.exceptions.HTTPError as exc:
            return connection_failure(exc)
        try:
            if 200 <= response.status < 300:
                return None
            return f"HTTP {response.status}"
        finally:
            response.close()  # the body unread: a receiver's words are not specstore's


def readiness(announcements: Announcements, alert_seconds: float, now: Any) -> str:
    """``ok``, or ``degraded`` when an announcement has waited longer than
    ``alert_seconds`` (``now``: the store's clock)."""
    _, oldest = announcements.waiting()
    waited = (now - oldest).total_seconds() if oldest is not None else 0.0
    return "degraded" if waited > alert_seconds else "ok"
