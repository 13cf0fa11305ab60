"""Wiring: settings in, a ready Flask app (or the parts the CLI needs) out.

Nothing is connected or fetched here: the database is reached on the first
request, the auth service's key when the first token has to be checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from datapackage_pipelines_specstore.fetch import Limits
from flask import Flask
from flask_cors import CORS

from . import web
from .auth import LocalKeyPair, PublicKeySource, RemotePublicKey, StaticPublicKey, TokenVerifier
from .config import ConfigError, Settings, configure
from .errors import ServiceUnavailable
from .hooks import HookCredentials
from .http_client import HttpClient
from .pipelines.announcer import Announcer, readiness
from .pipelines.dpp import DppDashboard, DppDispatcher, DppPipelines
from .pipelines.engine import Engine
from .pipelines.layout import OutputLayout
from .pipelines.outputs import Outputs
from .pipelines.planner import Planner
from .pipelines.reports import Reports
from .pipelines.runner import EmbeddedRunner
from .pipelines.scheduler import Scheduler
from .pipelines.unchanged import Unchanged
from .publications import Publications
from .service import SourceService
from .store import Store
from .store.database import Database
from .store.installation import InstallationValues
from .store.records import RevisionRef
from .throttle import SpecBytesThrottle, UploadThrottle
from .validation import spec_validator
from .web.operations import configure_logging
from .web.representations import JSONProvider

DASHBOARD_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Components:
    settings: Settings
    store: Store
    keys: PublicKeySource
    service: SourceService
    engine: Engine | None
    scheduler: Scheduler | None
    announcer: Announcer

    @property
    def database(self) -> Database:
        return self.store.database

    @property
    def installation(self) -> InstallationValues:
        return self.store.installation

    @property
    def hooks(self) -> HookCredentials:
        return self.service.hooks

    def start_engine(self) -> None:
        """Start running pipelines (and pick up what a stopped server left behind), and
        the scheduler that re-runs datasets on their schedules."""
        if self.engine is not None:
            self.engine.start()
        if self.scheduler is not None:
            self.scheduler.start()
        if self.settings.announce_urls:
            self.announcer.start()

    def announcements_check(self) -> str:
        """``off`` without receivers; ``degraded`` when an announcement has waited longer
        than ``ANNOUNCE_ALERT``; ``ok`` otherwise."""
        if not self.settings.announce_urls:
            return "off"
        store = self.store
        try:
            return readiness(
                store.announcements, self.settings.announce_alert, store.ledger.clock()
            )
        except ServiceUnavailable:
            return "degraded"  # the database's check says why

    def dpp_check(self) -> str:
        """``off`` without DPP; ``ok`` when its folder is writable, its dashboard answers
        and no revision has waited for it longer than ``DPP_WAIT_ALERT``; ``degraded``
        otherwise."""
        settings = self.settings
        if settings.engine_mode != "dpp":
            return "off"
        folder = os.path.abspath(settings.dpp_pipelines_dir or "")
        existing = folder if os.path.isdir(folder) else os.path.dirname(folder)
        if not os.access(existing, os.W_OK):
            return "degraded"
        dashboard = settings.dpp_url
        if dashboard and not HttpClient(DASHBOARD_TIMEOUT_SECONDS).answers(dashboard):
            return "degraded"
        ledger = self.store.ledger
        oldest = ledger.oldest_waiting()
        waited = (ledger.clock() - oldest).total_seconds() if oldest else 0.0
        return "degraded" if waited > settings.dpp_wait_alert else "ok"

    def close(self) -> None:
        self.announcer.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.engine is not None:
            self.engine.stop()
        self.store.database.dispose()


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


def _hook_credentials(settings: Settings, installation: InstallationValues) -> HookCredentials:
    """Credentials derived from HOOK_SECRET when set, else from the secret the installation
    made for itself; the old single token taken meanwhile is HOOK_TOKEN when set, else the
    one an older release made for the installation, if it did."""
    secret, legacy = settings.hook_secret, settings.hook_token
    return HookCredentials(
        (lambda: secret) if secret else installation.hook_secret,
        (lambda: legacy) if legacy else installation.legacy_hook_token,
    )


def _engine(
    settings: Settings,
    store: Store,
    planner: Planner,
    reports: Reports,
    hooks: HookCredentials,
    dashboard: DppDashboard | None,
) -> Engine | None:
    unchanged = Unchanged(store.baselines, store.ledger, planner.limits, settings.run_timeout)
    if settings.engine_mode == "dpp":
        if not settings.dpp_pipelines_dir:
            raise ConfigError(
                "DPP_URL is set but DPP_PIPELINES_DIR is not: pipelines need a folder"
            )
        public_url = settings.base_url

        def hook_url(ref: RevisionRef) -> str:
            credential = hooks.for_revision(ref.owner_id, ref.dataset, ref.revision)
            return (
                f"{public_url}source/update?dataset={ref.owner_id}/{ref.dataset}"
                f"&revision={ref.revision}&token={credential}"
            )

        return DppDispatcher(
            store.ledger,
            planner,
            reports,
            DppPipelines(settings.dpp_pipelines_dir),
            hook_url,
            silence_timeout=settings.dpp_silence_timeout,
            reconcile_after=settings.dpp_reconcile_after,
            dashboard=dashboard,
            backlog=settings.dpp_planning_backlog,
            per_owner=settings.runs_per_owner,
            unchanged=unchanged,
        )
    if settings.runner_workers == 0:
        return None
    return EmbeddedRunner(
        store.ledger,
        store.leases,
        planner,
        reports,
        workers=settings.runner_workers,
        timeout=settings.run_timeout,
        engines=settings.engines,
        npm_environment=settings.npm_environment(),
        lease_seconds=settings.runner_lease_seconds,
        runs_per_owner=settings.runs_per_owner,
        unchanged=unchanged,
    )


def fetch_limits(settings: Settings) -> Limits:
    """The one fetch policy: what every fetch of what a spec names runs under."""
    return Limits(
        allow=settings.input_url_allow,
        timeout=settings.download_timeout,
        max_bytes=settings.download_max_bytes,
        max_unpacked_bytes=settings.unpacked_max_bytes,
        allow_networks=settings.input_address_allow,
        ports=settings.input_ports,
        retries=settings.download_retries,
        backoff=settings.download_retry_backoff,
    )


def build(settings: Settings) -> Components:
    store = Store.open(settings.database_url, fast_path=settings.database_fast_path)
    keys = _key_source(settings, store.installation)
    hooks = _hook_credentials(settings, store.installation)
    outputs = Outputs(
        settings.engine_url,
        settings.engine_open_to,
        settings.npm_registry,
        run_timeout=settings.run_timeout,
        storage=settings.storage_parameters(),
        preview_rows=settings.preview_rows,
    )
    planner = Planner(
        OutputLayout(settings.output_dir),
        outputs,
        fetch_limits(settings),
        schedule_min_interval=settings.schedule_min_interval,
        max_resources=settings.max_resources,
    )
    reports = Reports(
        settings.output_dir, [settings.dpp_pipelines_dir or ""], data_root=settings.data_dir
    )
    dashboard = (
        DppDashboard(HttpClient(DASHBOARD_TIMEOUT_SECONDS), settings.dpp_url)
        if settings.dpp_url
        else None
    )
    engine = _engine(settings, store, planner, reports, hooks, dashboard)
    service = SourceService(
        revisions=store.revisions,
        ledger=store.ledger,
        verifier=TokenVerifier(keys, settings.auth_service, settings.auth_audience),
        throttle=(
            UploadThrottle(settings.upload_rate_limit, settings.rate_limit_storage_uri)
            if settings.upload_rate_limit
            else None
        ),
        spec_bytes=(
            SpecBytesThrottle(settings.spec_bytes_limit, settings.rate_limit_storage_uri)
            if settings.spec_bytes_limit
            else None
        ),
        schedules_per_owner=settings.schedules_per_owner,
        spec_validator=spec_validator(),
        hooks=hooks,
        planner=planner,
        reports=reports,
        engine=engine,
        dashboard=dashboard,
        publications=Publications(settings.storage_parameters(), settings.presigned_url_seconds),
    )
    scheduler = Scheduler(store.ledger, engine) if engine is not None else None
    announcer = Announcer(
        store.announcements,
        settings.announce_urls,
        settings.announce_secret,
        attempts=settings.announce_attempts,
        timeout=settings.announce_timeout,
        backoff_seconds=settings.announce_backoff,
    )
    return Components(settings, store, keys, service, engine, scheduler, announcer)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """The WSGI app. ``settings`` defaults to the environment; ``overrides``
    (Settings field names) win over either, which is how tests configure it."""
    if settings is None:
        settings = configure(**overrides)
    elif overrides:
        settings = configure({}, **{**settings.__dict__, **overrides})
    components = build(settings)
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.config["BODY_TIMEOUT"] = settings.body_timeout
    app.extensions["specstore"] = components.service
    app.extensions["specstore.components"] = components
    # CORS headers go to the requests that ask for them (a browser's, with an Origin):
    # reads say so in their Vary.
    CORS(
        app,
        origins=list(settings.cors_origins),
        expose_headers=["Retry-After", "ETag"],
        always_send=False,
    )
    web.init_app(app)
    configure_logging()
    app.before_request(components.start_engine)
    return app
