"""The JSON bodies the API answers with, built from registry records."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
from flask.json.provider import DefaultJSONProvider

from .events import MESSAGES
from .registry import DatasetPage, DatasetRevision, EventOutcome, RevisionRef

STATUS_LOG_LINES = 50


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, the bodies encoded by orjson: a listing of 50 in about 4 µs rather
    than 47 (``bench/layers.py``), non-ASCII characters sent as UTF-8 (by Flask's encoder
    too, which would escape them). What orjson does not encode as Flask does (dates,
    dataclasses), refuses (integers past 64 bits, lone surrogates), or a call with
    options but the compact separators orjson uses (debug mode's indenting) goes to
    Flask's encoder."""

    sort_keys = False
    ensure_ascii = False
    OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    COMPACT: ClassVar[dict[str, Any]] = {"separators": (",", ":")}

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs or kwargs == self.COMPACT:
            try:
                return orjson.dumps(obj, option=self.OPTIONS).decode()
            except TypeError:  # orjson.JSONEncodeError is one
                pass
        return super().dumps(obj, **kwargs)


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


# The members of info and of a revision that hold the spec, added to their bodies as the
# JSON text the database keeps (see ``with_members``): the spec whole, and info's
# ``source``, the spec without what its input carries (see ``registry.SOURCE_TEXT``).
INFO_SPEC = ("source", "spec_contents")
REVISION_SPEC = ("spec_contents",)


def with_members(text: str, members: Mapping[str, str]) -> str:
    """The JSON object ``text`` with ``members`` added last, their values JSON texts
    already: the spec is sent as the database keeps it, not decoded and encoded again
    (twice, for ``info``). ``text`` is an object with members of its own."""
    added = "".join(f",{json.dumps(key)}:{value}" for key, value in members.items())
    return f"{text[:-1]}{added}}}"


def spec_members(found: DatasetRevision, names: tuple[str, ...]) -> dict[str, str]:
    """The revision's spec under ``names``, as JSON text (see :func:`with_members`):
    ``source`` without what its input carries."""
    revision = found.revision
    return {
        name: revision.source_text if name == "source" else revision.spec_text for name in names
    }


def info(found: DatasetRevision, engine_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The seed's info record: specstore's own, with the engine's record (DPP's) over it;
    its spec (``source`` and ``spec_contents``) is added to it as JSON text, see
    :data:`INFO_SPEC`, and so is its ``pipeline`` unless the engine's record has one."""
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
        "stats": revision.stats,
        "trigger": revision.trigger,
        "queued": epoch(revision.queued),
        "started": epoch(revision.started),
        "ended": epoch(revision.ended),
        "updated": epoch(revision.modified),
        "last_success": epoch(dataset.last_success),
        "spec_modified": iso(revision.created),
    }
    record.update(
        {key: value for key, value in (engine_record or {}).items() if key not in INFO_SPEC}
    )
    return record


def revision(found: DatasetRevision) -> dict[str, Any]:
    """A revision's record; its spec (``spec_contents``) is added to it as JSON text, see
    :data:`REVISION_SPEC`."""
    revision = found.revision
    return {
        "id": found.flow_id,
        "revision": revision.revision,
        "trigger": revision.trigger,
        "state": revision.state,
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
