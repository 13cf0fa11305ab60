"""DPP's dashboard, asked what it recorded of a pipeline's run."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from ...http_client import HttpClient, PeerUnavailable
from ..planner import REVISION_KEY

log = logging.getLogger(__name__)

# DPP's states, as specstore names them.
DPP_STATES = {"INIT": "REGISTERED", "QUEUED": "REGISTERED"}
DASHBOARD_FIELDS = (
    "state",
    "message",
    "success",
    "error_log",
    "reason",
    "stats",
    "dirty",
    "cache_hash",
    "queued",
    "started",
    "ended",
    "last_success",
    "pipeline",
)


class DppDashboard:
    """DPP's dashboard, asked with a short timeout, and never a wait for every request:

    * an answer (a record, or DPP's 404 for a pipeline it has not registered yet) is kept
      for ``ttl`` seconds, so that front ends polling one dataset's ``info`` share one ask;
    * a record the dashboard failed to answer (hanging past the timeout, an error status)
      is not asked for again for ``retry_after`` seconds: meanwhile ``info`` of that
      dataset answers from specstore's own records at once. One dataset's slow record
      costs the others nothing;
    * once the dashboard does not answer at all (nothing takes the connection), or fails
      ``FAILURES_TO_PAUSE`` records in a row, it is not asked for any for ``retry_after``
      seconds, instead of each request holding a worker for the whole timeout.
    """

    FAILURES_TO_PAUSE = 3

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        ttl: float = 2.0,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self.base_url = base_url
        self._clock = clock
        self._retry_after = retry_after
        self._answers: TTLCache[str, Any] = TTLCache(maxsize=4096, ttl=ttl, timer=clock)
        self._failed: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=retry_after, timer=clock)
        self._failures = 0
        self._lock = threading.Lock()
        self._quiet_until = 0.0

    def record(self, pipeline_id: str, revision: int) -> dict[str, Any] | None:
        """DPP's record of the pipeline if it is of ``revision``; None when there is none,
        or the dashboard is not answering."""
        record = self._raw(pipeline_id)
        if not isinstance(record, dict):
            return None
        pipeline = record.get("pipeline") or {}
        if not isinstance(pipeline, dict) or pipeline.get(REVISION_KEY) != revision:
            return None
        found = {key: record[key] for key in DASHBOARD_FIELDS if key in record}
        # specstore's trigger (upload, scheduled) stays; DPP's says why DPP ran it.
        if "trigger" in record:
            found["dpp_trigger"] = record["trigger"]
        if "state" in found:
            found["state"] = DPP_STATES.get(found["state"], found["state"])
        return found

    def _raw(self, pipeline_id: str) -> Any:
        """The dashboard's answer for the pipeline (None: no record), as kept or asked now."""
        with self._lock:
            if pipeline_id in self._answers:
                return self._answers[pipeline_id]
            if self._clock() < self._quiet_until or pipeline_id in self._failed:
                return None
        try:
            answer = self._http.get(f"{self.base_url}api/raw/{pipeline_id}").json()
        except PeerUnavailable as exc:
            if exc.status != 404:
                self._note_failure(pipeline_id, exc)
                return None
            answer = None
        except ValueError:
            answer = None
        with self._lock:
            self._answers[pipeline_id] = answer
            self._failures = 0
        return answer

    def _note_failure(self, pipeline_id: str, exc: PeerUnavailable) -> None:
        with self._lock:
            self._failed[pipeline_id] = True
            self._failures += 1
            pause = not exc.reached or self._failures >= self.FAILURES_TO_PAUSE
            if pause:
                self._quiet_until = self._clock() + self._retry_after
        # Not the URL: DPP_URL may carry the dashboard's basic auth.
        if not exc.reached:
            what = "does not answer"
        else:
            what = f"answered {exc.status}" if exc.status else "did not answer in time"
        which = "any record" if pause else f"{pipeline_id}'s record"
        log.warning("DPP's dashboard %s: %s not asked for for %g s", what, which, self._retry_after)
