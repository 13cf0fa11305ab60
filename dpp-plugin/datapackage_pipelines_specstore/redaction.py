"""Keeping secrets out of logs: tokens travel in query strings (``?token=`` on
the engine's hook URL, ``?jwt=`` from some clients)."""

from __future__ import annotations

import re

SECRET_PARAMETERS = ("token", "jwt")
# ``<name>=`` after ``?`` or ``&``, and its value: up to where a query ends, or a quote (a
# URL quoted in a log line, or in JSON text). The pattern starts with the name, which
# the regex engine then looks for as plain text, rather than trying a match at every ``?``
# and ``&``; the lookbehind keeps it to whole parameter names.
_SECRETS_IN_QUERY = tuple(
    (f"{name}=", re.compile(rf"{name}=(?<=[?&]{name}=)[^&\s#\"]*")) for name in SECRET_PARAMETERS
)


def redact_query(text: str) -> str:
    """``text`` with the values of secret query parameters replaced by ``***``."""
    for named, pattern in _SECRETS_IN_QUERY:
        if named in text:
            text = pattern.sub(f"{named}***", text)
    return text
