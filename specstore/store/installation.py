"""Values that an installation makes once and every worker and restart shares.

They live in the ``settings`` table: the first process to need one creates it
with ``INSERT ... ON CONFLICT DO NOTHING`` and everyone, that process included,
reads back the row that won, so two workers starting together agree.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import statements
from .database import Database

# The settings' names, not secrets. ``hook_token`` is the single hook token older
# releases made; ``hook_secret`` the key each revision's hook credential is derived from.
HOOK_TOKEN = "hook_token"  # noqa: S105
HOOK_SECRET = "hook_secret"  # noqa: S105
LOCAL_PRIVATE_KEY = "local_private_key"


def new_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


class InstallationValues:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._cache: dict[str, str] = {}
        self._found: dict[str, str | None] = {}

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        if name not in self._cache:
            with self._database.write() as tx:
                value = tx.scalar(statements.setting(), name=name)
                if value is None:
                    tx.send(statements.add_setting(tx.dialect), new_name=name, new_value=make())
                    value = tx.scalar(statements.setting(), name=name)
            self._cache[name] = value
        return self._cache[name]

    def get(self, name: str) -> str | None:
        """The value ``name``, if the installation has made one (None: it has not),
        read once per process: nothing makes one of these later."""
        if name not in self._found:
            self._found[name] = self._database.read(
                lambda reader: reader.scalar(statements.setting(), name=name)
            )
        return self._found[name]

    def forget(self, name: str) -> bool:
        """Remove the value ``name``; whether there was one."""
        self._cache.pop(name, None)
        self._found.pop(name, None)
        with self._database.write() as tx:
            return tx.count(statements.remove_setting(), name=name) > 0

    def hook_secret(self) -> str:
        return self.get_or_create(HOOK_SECRET, lambda: secrets.token_urlsafe(32))

    def legacy_hook_token(self) -> str | None:
        """The single hook token an older release made for this installation, if it did."""
        return self.get(HOOK_TOKEN)

    def local_private_key_pem(self) -> str:
        return self.get_or_create(LOCAL_PRIVATE_KEY, new_private_key_pem)
