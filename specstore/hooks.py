"""Who may post engine events: a credential per revision, derived from a server secret.

DPP calls specstore back at the hook URLs written into each revision's pipelines
(``/source/update?dataset=<ownerid>/<dataset>&revision=<n>&token=<credential>``); the
only secret it can carry is in that URL, and DPP shows it in its dashboard and logs.
So the credential opens one thing only: events of that one revision of that one
dataset. It is an HMAC-SHA256 of ``<ownerid>/<dataset>/<revision>`` under the server's
hook secret (``HOOK_SECRET``, or one the installation makes once and keeps in its
database), checked in constant time, and worth nothing once the run has ended (a
finished revision never moves again).

The single token of older releases (``HOOK_TOKEN``, or the one an installation made
for itself) is still taken for any revision while a deployment upgrades: revisions
handed to DPP before the upgrade carry it in their hook URLs. Every event it
authorises is logged, so an operator sees when it is no longer used and retires it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable

from .errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)


def credential(secret: str, owner_id: str, dataset: str, revision: int) -> str:
    """The credential for events of revision ``revision`` of ``owner_id/dataset``."""
    message = f"{owner_id}/{dataset}/{revision}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class HookCredentials:
    """Makes and checks hook credentials. ``secret`` and ``legacy`` are asked for only
    when needed (each may read the database once)."""

    def __init__(
        self, secret: Callable[[], str], legacy: Callable[[], str | None] = lambda: None
    ) -> None:
        self._secret = secret
        self._legacy = legacy

    def for_revision(self, owner_id: str, dataset: str, revision: int) -> str:
        return credential(self._secret(), owner_id, dataset, revision)

    def check(
        self, token: str | None, owner_id: str | None, dataset: str | None, revision: int | None
    ) -> None:
        """Refuse events without the credential of ``owner_id/dataset``'s ``revision``
        (:class:`Unauthorized` without one, :class:`Forbidden` with another); the old
        single token passes for any revision."""
        if not token:
            raise Unauthorized("the hook token is required (?token= or X-Hook-Token)")
        given = token.encode("utf-8")
        if owner_id is not None and dataset is not None and revision is not None:
            expected = self.for_revision(owner_id, dataset, revision).encode("ascii")
            if hmac.compare_digest(given, expected):
                return
        legacy = self._legacy()
        if legacy is not None and hmac.compare_digest(given, legacy.encode("utf-8")):
            log.warning(
                "an event for %r carried the old single hook token: retire it once no "
                "revision handed over before the upgrade is waiting (see docs)",
                f"{owner_id}/{dataset}" if owner_id else "a pipeline",
            )
            return
        if owner_id is None or dataset is None or revision is None:
            raise Forbidden(
                "the hook token is not valid: a revision's token comes with ?dataset= and "
                "?revision=, as its hook URL gives them"
            )
        raise Forbidden("the hook token is not valid")
