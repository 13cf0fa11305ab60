"""specstore's scheduler: datasets re-run on their schedule, on either engine.

Every server process runs one; each looks for due datasets every few seconds
(``Ledger.fire_schedules``, which fires each due time once, whichever process gets
there first) and hands the revisions it added to the engine, as an upload would.
A revision that is added but not handed over (the process stopped in between) is
LOADED: the engine's sweeper hands it over, as it does any left behind.
"""

from __future__ import annotations

import logging

from ..store.ledger import Ledger
from .engine import Engine, Periodic

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class Scheduler:
    def __init__(self, ledger: Ledger, engine: Engine, poll_seconds: float = POLL_SECONDS):
        self.ledger = ledger
        self.engine = engine
        self._loop = Periodic("specstore-scheduler", poll_seconds, self.tick)

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def tick(self) -> int:
        """Fire what is due; how many revisions that added."""
        fired = self.ledger.fire_schedules()
        for ref, spec in fired:
            log.info("%s: scheduled", ref.flow_id)
            try:
                self.engine.dispatch(ref, spec)
            except Exception:
                log.exception("handing the scheduled %s to the engine failed", ref.flow_id)
        return len(fired)
