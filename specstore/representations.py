"""The JSON bodies the API answers with, built from registry records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .events import MESSAGES
from .redaction import redact_query
from .registry import DatasetPage, DatasetRevision, EventOutcome, RevisionRef

STATUS_LOG_LINES = 50


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def epoch(moment: dt.datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def uploaded(registered: RevisionRef) -> dict[str, Any]:
    return {
        "success": True,
        "id": registered.id,
        # What the DataHub client reads (its README and its push-flow command).
        "dataset_id": registered.id,
        "revision": registered.revision,
        "flow_id": registered.flow_id,
        "errors": [],
    }


def updated(outcome: EventOutcome) -> dict[str, Any]:
    return {
        "success": True,
        "id": outcome.flow_id,
        "state": outcome.state,
        "applied": outcome.applied,
        "errors": [],
    }


def failure(status: int, messages: list[str]) -> dict[str, Any]:
    """Every error's body: the reasons as a list, and again as one message under
    ``error`` (the DataHub client shows ``error.message`` for any answer but 200)."""
    return {
        "success": False,
        "id": None,
        "errors": messages,
        "error": {"status": status, "message": "\n".join(messages)},
    }


def status(found: DatasetRevision) -> dict[str, Any]:
    revision = found.revision
    return {
        "state": revision.state,
        "trigger": revision.trigger,
        "errors": list(revision.errors),
        "logs": list(revision.logs[-STATUS_LOG_LINES:]),
        "modified": iso(revision.modified),
        "stats": revision.stats,
    }


def without_secrets(pipeline: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pipeline definition fit to show: hook URLs carry the hook token."""
    if not isinstance(pipeline, dict) or "hooks" not in pipeline:
        return pipeline
    return {**pipeline, "hooks": [redact_query(str(hook)) for hook in pipeline["hooks"]]}


def info(found: DatasetRevision, engine_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The seed's info record: specstore's own, with the engine's record (DPP's) over it."""
    dataset, revision = found.dataset, found.revision
    main = (revision.pipelines or {}).get(f"{dataset.owner_id}/{dataset.name}")
    record = {
        "id": f"./{dataset.owner_id}/{dataset.name}",
        "flow_id": found.flow_id,
        "revision": revision.revision,
        "state": revision.state,
        "message": MESSAGES[revision.state],
        "success": revision.success,
        "error_log": list(revision.errors),
        "reason": "\n".join(revision.logs),
        "stats": revision.stats,
        "trigger": revision.trigger,
        "queued": epoch(revision.queued),
        "started": epoch(revision.started),
        "ended": epoch(revision.ended),
        "updated": epoch(revision.modified),
        "last_success": epoch(dataset.last_success),
        "pipeline": main,
        "source": revision.spec,
        "spec_contents": revision.spec,
        "spec_modified": iso(revision.created),
    }
    record.update(engine_record or {})
    record["pipeline"] = without_secrets(record["pipeline"])
    return record


def revision(found: DatasetRevision) -> dict[str, Any]:
    revision = found.revision
    return {
        "id": found.flow_id,
        "revision": revision.revision,
        "trigger": revision.trigger,
        "state": revision.state,
        "spec_contents": revision.spec,
        "created": iso(revision.created),
        "modified": iso(revision.modified),
        "errors": list(revision.errors),
        "stats": revision.stats,
    }


def listing(page: DatasetPage) -> dict[str, Any]:
    return {
        "datasets": [
            {
                "id": f"{listed.owner_id}/{listed.name}",
                "dataset": listed.name,
                "revision": listed.revision,
                "state": listed.state,
                "modified": iso(listed.modified),
            }
            for listed in page.rows
        ],
        "total": page.total,
    }
