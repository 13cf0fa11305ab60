"""Keeping secrets out of logs: tokens travel in query strings (``?token=`` on
the engine's hook URL, ``?jwt=`` from some clients)."""

from __future__ import annotations

import re

SECRET_PARAMETERS = ("token", "jwt")
_SECRET_IN_QUERY = re.compile(r"([?&](?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&\s#]*")


def redact_query(text: str) -> str:
    """``text`` with the values of secret query parameters replaced by ``***``."""
    return _SECRET_IN_QUERY.sub(r"\1***", text)
