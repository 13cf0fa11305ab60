"""What an engine is to the rest of specstore: both engines (the embedded runner and the
dispatcher to datapackage-pipelines) are one :class:`Engine`, and their background work
runs in :class:`Periodic` loops."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ..store.records import Handover, RevisionRef
from .planner import Checked

log = logging.getLogger(__name__)


class Engine(Protocol):
    def start(self) -> None:
        """Start its background work (once per process; every request may ask)."""

    def stop(self) -> None:
        """Stop taking work, and let go of what it holds."""

    def prepare(self, ref: RevisionRef, spec: dict[str, Any], checked: Checked) -> Handover | None:
        """Inside an upload's transaction, before the revision's row is written (``ref``
        has its number, not its row id): what the engine makes of it now (None: it takes
        it later, outside the transaction)."""

    def dispatch(
        self,
        ref: RevisionRef,
        spec: dict[str, Any] | None = None,
        handover: Handover | None = None,
    ) -> None:
        """Take ``ref`` (stored; its upload's ``handover``, if it prepared one)."""


class Periodic:
    """A daemon thread that calls ``step`` every ``seconds`` until stopped. A step that
    fails is logged (and ``on_failure`` called), and the next comes all the same."""

    def __init__(
        self,
        name: str,
        seconds: float,
        step: Callable[[], Any],
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.seconds = seconds
        self._step = step
        self._on_failure = on_failure
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return  # the common case, on every request: no lock taken
        with self._lock:
            if self._thread is not None or self.stopping.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._step()
            except Exception:
                log.exception("%s: its round failed", self.name)
                if self._on_failure is not None:
                    self._on_failure()
            self.stopping.wait(self.seconds)

    def stop(self, wait: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=wait)
