"""What a run read of each source, and whether a source still says the same.

A load step records, for each resource it fetched, the version it got: the server's
validators (``ETag``, ``Last-Modified``) and the SHA-256 and size of the bytes. They go
into the run's statistics as ``source.<resource>``, where a later scheduled revision of
the dataset finds them (see ``specstore.pipelines.unchanged``) and asks the source,
with a conditional request, whether it has anything newer. A server that answers 304
has not changed it; one that answers the whole file again (many ignore the conditions)
is compared by content hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .fetch import Fetched, Limits, fetch

SOURCE_STAT = "source"
# What a header's value may hold when it is sent again (RFC 9110's field-value: visible
# characters, spaces and tabs). A validator a server folded over lines, or a record
# edited since, is not sent: http.client would refuse the request outright.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def source_stat(resource: str) -> str:
    """The statistic a load step records a resource's source version in."""
    return f"{SOURCE_STAT}.{resource}"


def version(fetched: Fetched) -> dict[str, Any]:
    """What a run records of the version of a source it fetched."""
    found = {
        "etag": fetched.etag,
        "last_modified": fetched.last_modified,
        "sha256": fetched.sha256,
        "bytes": fetched.size,
    }
    return {key: value for key, value in found.items() if value is not None}


class _Digest:
    """A sink that keeps only the SHA-256 of what is written to it."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)


def conditions(recorded: Mapping[str, Any]) -> dict[str, str]:
    """The conditional request's headers for a version recorded by :func:`version`."""
    asked = {
        "If-None-Match": recorded.get("etag"),
        "If-Modified-Since": recorded.get("last_modified"),
    }
    return {
        header: value
        for header, value in asked.items()
        if isinstance(value, str) and value.strip() and _FIELD_VALUE.fullmatch(value)
    }


def unchanged(
    url: str, recorded: Mapping[str, Any], limits: Limits, deadline: float | None = None
) -> bool:
    """Whether ``url`` still serves the version ``recorded``: a 304 to the conditional
    request, else the same bytes (hashed as they arrive, never stored). Raises
    ``FetchError`` when the source cannot be asked (which is no answer either way)."""
    sink = _Digest()
    fetched = fetch(url, sink, limits, deadline=deadline, conditions=conditions(recorded))  # type: ignore[arg-type]
    if fetched.not_modified:
        return True
    return fetched.sha256 is not None and fetched.sha256 == recorded.get("sha256")
