"""Wiring: settings in, a ready Flask app (or the parts the CLI needs) out.

Nothing is connected or fetched here: the database is reached on the first
request, the auth service's key when the first token has to be checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_cors import CORS

from . import api
from .auth import LocalKeyPair, PublicKeySource, RemotePublicKey, StaticPublicKey, TokenVerifier
from .config import ConfigError, Settings, configure
from .db import Database
from .http_client import HttpClient
from .installation import InstallationValues
from .registry import Registry
from .service import SourceService
from .validation import spec_validator


@dataclass(frozen=True)
class Components:
    settings: Settings
    database: Database
    installation: InstallationValues
    keys: PublicKeySource
    service: SourceService

    def hook_token(self) -> str:
        return _hook_token_source(self.settings, self.installation)()


def _key_source(settings: Settings, installation: InstallationValues) -> PublicKeySource:
    if settings.auth_mode == "static":
        try:
            return StaticPublicKey(settings.auth_public_key or "")
        except ValueError as exc:
            raise ConfigError(f"AUTH_PUBLIC_KEY: {exc}") from exc
    if settings.auth_mode == "remote":
        return RemotePublicKey(
            HttpClient(settings.auth_timeout),
            settings.auth_server or "",
            ttl=settings.auth_key_ttl,
            refresh_interval=settings.auth_key_refresh_interval,
        )
    return LocalKeyPair(installation)


def _hook_token_source(settings: Settings, installation: InstallationValues) -> Callable[[], str]:
    """HOOK_TOKEN when set, else the token the installation made for itself."""
    configured = settings.hook_token
    return (lambda: configured) if configured else installation.hook_token


def build(settings: Settings) -> Components:
    database = Database(settings.database_url)
    installation = InstallationValues(database)
    keys = _key_source(settings, installation)
    service = SourceService(
        registry=Registry(database),
        verifier=TokenVerifier(keys, settings.auth_service),
        spec_validator=spec_validator(),
        hook_token=_hook_token_source(settings, installation),
    )
    return Components(settings, database, installation, keys, service)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """The WSGI app. ``settings`` defaults to the environment; ``overrides``
    (Settings field names) win over either, which is how tests configure it."""
    if settings is None:
        settings = configure(**overrides)
    elif overrides:
        settings = configure({}, **{**settings.__dict__, **overrides})
    components = build(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json.sort_keys = False
    app.extensions["specstore"] = components.service
    app.extensions["specstore.components"] = components
    CORS(
        app,
        origins=list(settings.cors_origins),
        expose_headers=["Retry-After"],
    )
    api.init_app(app)
    return app
