"""Who may see what: the one rule the API and the dashboard both answer by.

A dataset shows as its newest revision's ``findability`` says (published: to everyone;
unlisted: to everyone with its URL; private: to its owner only), and an older revision
shows only when its dataset does and it is not private itself. For whoever may not see
it, a hidden dataset or revision is a missing one, word for word.
"""

from __future__ import annotations

import re

from .auth import Identity, TokenVerifier
from .store.records import PRIVATE

# What an owner id or a dataset name may be (the spec's schema says the same).
_SEGMENT = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,128}")


def is_segment(name: str) -> bool:
    """Whether ``name`` may be an owner id or a dataset name."""
    return _SEGMENT.fullmatch(name) is not None


def may_see(findability: str | None, owner_id: str, userid: str | None) -> bool:
    """Whether ``userid`` may see what has ``findability`` (None: it does not exist)."""
    return findability is not None and (findability != PRIVATE or userid == owner_id)


class Viewer:
    """Who is asking, found out only when it matters (a private dataset, a listing).

    The token is verified at most once, and only if there is one.
    """

    def __init__(self, verifier: TokenVerifier, token: str | None) -> None:
        self._verifier = verifier
        self._token = token
        self._identity: Identity | None = None

    @property
    def userid(self) -> str | None:
        if self._token is None:
            return None
        if self._identity is None:
            self._identity = self._verifier.verify(self._token)
        return self._identity.userid
