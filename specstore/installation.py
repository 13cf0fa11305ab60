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
from sqlalchemy import select

from .db import Database, insert_if_absent
from .models import Setting

HOOK_TOKEN = "hook_token"  # noqa: S105 - the setting's name, not a secret
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

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        if name not in self._cache:
            with self._database.transaction(write=True) as session:
                value = session.scalar(select(Setting.value).where(Setting.name == name))
                if value is None:
                    insert_if_absent(
                        session, Setting.__table__, {"name": name, "value": make()}, ["name"]
                    )
                    value = session.scalar(select(Setting.value).where(Setting.name == name))
            self._cache[name] = value
        return self._cache[name]

    def hook_token(self) -> str:
        return self.get_or_create(HOOK_TOKEN, lambda: secrets.token_urlsafe(32))

    def local_private_key_pem(self) -> str:
        return self.get_or_create(LOCAL_PRIVATE_KEY, new_private_key_pem)
