"""The JSON bodies the API answers with, built from the store's records."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from flask.json.provider import DefaultJSONProvider

from ..events import MESSAGES
from ..publications import without_publication
from ..store.records import DatasetPage, DatasetRevision, EventOutcome, RevisionRef

STATUS_LOG_LINES = 50


@dataclass(frozen=True)
class JSONText:
    """A value that is JSON text already (a spec as the database keeps it): sent as it is,
    neither decoded nor encoded again."""

    text: str


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, the bodies encoded by orjson (why: docs/decisions/0002-json-bodies.md),
    non-ASCII characters sent as UTF-8 (by Flask's encoder too, which would escape them),
    and :class:`JSONText` as the text it holds. What orjson does not encode as Flask does
    (dates, dataclasses), refuses (integers past 64 bits, lone surrogates), or a call
    with options but the compact separators orjson uses (debug mode's indenting) goes to
    Flask's encoder."""

    sort_keys = False
    ensure_ascii = False
    OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    COMPACT: ClassVar[dict[str, Any]] = {"separators": (",", ":")}

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs or kwargs == self.COMPACT:
            try:
                return orjson.dumps(obj, default=_as_fragment, option=self.OPTIONS).decode()
            except TypeError:  # orjson.JSONEncodeError is one
                pass
        return super().dumps(obj, **kwargs)

    @staticmethod
    def default(value: Any) -> Any:
        if isinstance(value, JSONText):
            return json.loads(value.text)
        return DefaultJSONProvider.default(value)


def _as_fragment(value: Any) -> Any:
    if isinstance(value, JSONText):
        return orjson.Fragment(value.text)
    raise TypeError


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


def status(found: DatasetRevision, published: dict[str, Any] | None = None) -> dict[str, Any]:
    """``published``: what the revision published (see ``SourceService.published``)."""
    revision = found.revision
    return {
        "state": revision.state,
        "trigger": revision.trigger,
        "errors": list(revision.errors),
        "logs": list(revision.logs[-STATUS_LOG_LINES:]),
        "modified": iso(revision.modified),
        "stats": without_publication(revision.stats),
        **(published or {}),
    }


def info(
    found: DatasetRevision,
    shown_pipeline: str | None,
    engine_record: dict[str, Any] | None = None,
    published: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The seed's info record: specstore's own, with the engine's record (DPP's) over it,
    but for the spec: ``spec_contents`` whole, ``source`` without what its input carries,
    both as the database keeps them; and ``pipeline``, the main pipeline as shown (see
    ``SourceService.shown_pipeline``), unless the engine's record has one."""
    dataset, revision = found.dataset, found.revision
    record = {
        "id": f"./{dataset.owner_id}/{dataset.name}",
        "flow_id": found.flow_id,
        "revision": revision.revision,
        "state": revision.state,
        "message": MESSAGES[revision.state],
        "success": revision.success,
        "error_log": list(revision.errors),
        "reason": "\n".join(revision.logs),
        "stats": without_publication(revision.stats),
        "trigger": revision.trigger,
        "queued": epoch(revision.queued),
        "started": epoch(revision.started),
        "ended": epoch(revision.ended),
        "updated": epoch(revision.modified),
        "last_success": epoch(dataset.last_success),
        "spec_modified": iso(revision.created),
    }
    record.update(published or {})
    record["pipeline"] = JSONText(shown_pipeline) if shown_pipeline is not None else None
    record.update(
        {
            key: value
            for key, value in (engine_record or {}).items()
            if key not in ("source", "spec_contents")
        }
    )
    record["source"] = JSONText(revision.source_text)
    record["spec_contents"] = JSONText(revision.spec_text)
    return record


def revision(found: DatasetRevision, published: dict[str, Any] | None = None) -> dict[str, Any]:
    """A revision's record, its spec (``spec_contents``) as the database keeps it."""
    revision = found.revision
    return {
        "id": found.flow_id,
        "revision": revision.revision,
        "trigger": revision.trigger,
        "state": revision.state,
        "created": iso(revision.created),
        "modified": iso(revision.modified),
        "errors": list(revision.errors),
        "stats": without_publication(revision.stats),
        **(published or {}),
        "spec_contents": JSONText(revision.spec_text),
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
