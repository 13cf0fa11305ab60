"""specstore's scheduler: datasets re-run on their schedule, on either engine.

Every server process runs one; each looks for due datasets every few seconds
(``Registry.fire_schedules``, which fires each due time once, whichever process gets
there first) and hands the revisions it added to the engine, as an upload would.
A revision that is added but not handed over (the process stopped in between) is
LOADED: the engine's sweeper hands it over, as it does any left behind.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..registry import Registry

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class Scheduler:
    def __init__(self, registry: Registry, engine: Any, poll_seconds: float = POLL_SECONDS):
        self.registry = registry
        self.engine = engine
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="specstore-scheduler", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("the scheduler's round failed")
            self._stopping.wait(self.poll_seconds)

    def tick(self) -> int:
        """Fire what is due; how many revisions that added."""
        fired = self.registry.fire_schedules()
        for ref, spec in fired:
            log.info("%s: scheduled", ref.flow_id)
            try:
                self.engine.dispatch(ref, spec)
            except Exception:
                log.exception("handing the scheduled %s to the engine failed", ref.flow_id)
        return len(fired)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
