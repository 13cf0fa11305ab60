"""Pipeline states and the engine's events that move a revision through them.

A revision only ever moves forward::

    LOADED -> REGISTERED -> RUNNING -> SUCCEEDED | FAILED | INVALID

so an event that arrives late, twice, or out of order never undoes a later
one, and nothing moves a finished revision again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import BadRequest
from .validation import event_validator, storable

LOADED = "LOADED"
REGISTERED = "REGISTERED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
INVALID = "INVALID"

FINAL_STATES = frozenset({SUCCEEDED, FAILED, INVALID})
_RANK = {LOADED: 0, REGISTERED: 1, RUNNING: 2, SUCCEEDED: 3, FAILED: 3, INVALID: 3}

MESSAGES = {
    LOADED: "Loaded",
    REGISTERED: "Queued",
    RUNNING: "Running",
    SUCCEEDED: "Succeeded",
    FAILED: "Failed",
    INVALID: "Invalid",
}

# How many log lines a revision keeps; status shows the last STATUS_LOG_LINES.
MAX_STORED_LOG_LINES = 1000

QUEUE, START, PROGRESS, FINISH = "queue", "start", "progress", "finish"
_EVENT_ALIASES = {"finished": FINISH}


@dataclass(frozen=True)
class PipelineId:
    """``<ownerid>/<dataset>`` for a dataset's main pipeline, ``...:<suffix>`` for a helper."""

    owner_id: str
    dataset: str
    suffix: str | None = None

    @classmethod
    def parse(cls, text: str) -> PipelineId:
        path = text.removeprefix("./")
        main, _, suffix = path.partition(":")
        owner_id, slash, dataset = main.partition("/")
        if not slash or not owner_id or not dataset or "/" in dataset:
            raise BadRequest(f"pipeline_id: {text!r} is not '<ownerid>/<dataset>[:<suffix>]'")
        return cls(owner_id, dataset, suffix or None)

    @property
    def is_main(self) -> bool:
        return self.suffix is None

    def __str__(self) -> str:
        main = f"{self.owner_id}/{self.dataset}"
        return f"{main}:{self.suffix}" if self.suffix else main


@dataclass(frozen=True)
class PipelineEvent:
    pipeline: PipelineId
    event: str
    revision: int | None = None
    success: bool | None = None
    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, payload: Any, revision: int | None = None) -> PipelineEvent:
        """Read an engine's event body: DPP's ``pipeline_id`` or the older ``pipeline``.

        ``revision`` (from the hook URL) says which revision the event is for;
        without it the event is for the dataset's newest revision.
        """
        # Whatever the text holds, the event is recorded: what no database stores is replaced.
        payload = storable(payload)
        event_validator().check(payload)
        pipeline = payload.get("pipeline_id", payload.get("pipeline"))
        if pipeline is None:
            raise BadRequest("pipeline_id: is required")
        return cls(
            pipeline=PipelineId.parse(pipeline),
            event=_EVENT_ALIASES.get(payload["event"], payload["event"]),
            revision=payload.get("revision", revision),
            success=payload.get("success"),
            errors=list(payload.get("errors") or []),
            log=list(payload.get("log") or []),
            stats=dict(payload.get("stats") or {}),
        )


class Trackable(Protocol):
    """What an event changes (the revision row)."""

    state: str
    success: bool | None
    logs: list[str]
    errors: list[str]
    stats: dict[str, Any]
    queued: dt.datetime | None
    started: dt.datetime | None
    ended: dt.datetime | None


def _advance(target: Trackable, state: str) -> bool:
    if _RANK[state] <= _RANK[target.state]:
        return False
    target.state = state
    return True


def append_log(target: Trackable, lines: list[str]) -> bool:
    """Add a log tail, unless it is exactly the tail already stored (a repeated event)."""
    if not lines or target.logs[-len(lines) :] == lines:
        return False
    target.logs = (list(target.logs) + lines)[-MAX_STORED_LOG_LINES:]
    return True


def apply_event(target: Trackable, event: PipelineEvent, now: dt.datetime) -> bool:
    """Apply ``event`` to ``target``; True when it changed anything."""
    if target.state in FINAL_STATES:
        return False
    if event.event == QUEUE:
        changed = _advance(target, REGISTERED)
        if changed:
            target.queued = now
        return changed
    if event.event in (START, PROGRESS):
        changed = _advance(target, RUNNING)
        if changed:
            target.started = now
        if event.event == PROGRESS:
            changed = append_log(target, event.log) or changed
        return changed
    # FINISH: a helper pipeline's success only adds its log; the main
    # pipeline's finish, or any failure, ends the revision.
    changed = append_log(target, event.log)
    if event.success and not event.pipeline.is_main:
        return _advance(target, RUNNING) or changed
    # A helper pipeline's errors say which helper failed.
    prefix = "" if event.pipeline.is_main else f"{event.pipeline}: "
    end_run(
        target,
        SUCCEEDED if event.success else FAILED,
        [prefix + line for line in event.errors],
        now,
    )
    if event.stats and event.pipeline.is_main:
        target.stats = event.stats
    return True


def end_run(target: Trackable, state: str, errors: list[str], now: dt.datetime) -> bool:
    """Finish ``target`` as ``state`` (SUCCEEDED, FAILED or INVALID), unless it already is."""
    if target.state in FINAL_STATES:
        return False
    target.state = state
    target.success = state == SUCCEEDED
    target.errors = list(errors)
    target.ended = now
    if target.started is None:
        target.started = now
    return True
