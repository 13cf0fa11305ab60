"""Configuration: the one place where the environment is read.

``configure()`` turns a mapping (``os.environ`` in production, a plain dict in
tests) into an immutable :class:`Settings`, coercing and checking every value
so that a bad setting stops the service at start-up with a clear message
instead of failing on the first request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from datapackage_pipelines_specstore.fetch import parse_networks, parse_ports
from datapackage_pipelines_specstore.steps import sqlalchemy_url
from limits import parse_many
from sqlalchemy.engine import make_url

from .store.database import database_url
from .throttle import parse_byte_rates

DEFAULT_DATABASE_URL = "sqlite:///specstore.db"
# Large enough for a data package descriptor with its README inlined, as the DataHub
# client sends it.
DEFAULT_MAX_CONTENT_LENGTH = 16 * 1024 * 1024


class ConfigError(ValueError):
    """A setting is present but unusable."""


@dataclass(frozen=True)
class NpmRegistry:
    """Credentials for the npm output, configured as NPM_<NAME>_REGISTRY, NPM_<NAME>_TOKEN
    and (optionally) NPM_<NAME>_SCOPE: specs name them, never hold them."""

    registry: str
    token: str = field(repr=False)
    scope: str | None = None

    def environment(self, name: str) -> dict[str, str]:
        """The variables a pipeline process reads them from."""
        values = {f"NPM_{name}_REGISTRY": self.registry, f"NPM_{name}_TOKEN": self.token}
        if self.scope:
            values[f"NPM_{name}_SCOPE"] = self.scope
        return values


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Whether the store runs its statements through the driver's own cursor, pipelined
    # where it can (see specstore/store/sql.py); off: through SQLAlchemy's alone.
    database_fast_path: bool = True
    # Where the RS256 public key comes from: a PEM given directly (or read from
    # a file), else fetched from the auth service, else a local key pair.
    auth_server: str | None = None
    auth_public_key: str | None = None
    auth_service: str = "source"
    # The ``aud`` permission tokens must name (None: ``aud`` is not checked).
    auth_audience: str | None = None
    auth_timeout: float = 5.0
    auth_key_ttl: float = 3600.0
    auth_key_refresh_interval: float = 30.0
    dpp_url: str | None = None
    dpp_pipelines_dir: str | None = None
    public_url: str | None = None
    # The key each revision's hook credential is derived from (None: the installation's
    # own, made once and kept in the database).
    hook_secret: str | None = field(default=None, repr=False)
    # The single hook token of older releases, still taken during an upgrade (None: not).
    hook_token: str | None = field(default=None, repr=False)
    output_dir: str = "./output"
    # Where runs publish their data (datapackage_pipelines_specstore.storage): "local",
    # the folder DATA_DIR that specstore serves at /data/, or "s3", a bucket (S3_*), with
    # credentials from the standard AWS environment of the processes that run pipelines.
    storage: str = "local"
    data_dir: str = "./data"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_public_url: str | None = None
    s3_region: str | None = None
    # How long a presigned URL of a private dataset's object lasts.
    presigned_url_seconds: int = 24 * 3600
    # How many rows a table's preview has (a preview is published when a table has more).
    preview_rows: int = 2000
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    # Seconds a request body may take to arrive, in all (well under gunicorn's timeout).
    body_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ("*",)
    host: str = "127.0.0.1"
    port: int = 5000
    # The embedded runner: how many pipelines run at once (0: none, specs are only
    # stored), and for how long one may run.
    runner_workers: int = 2
    run_timeout: float = 3600.0
    # How long the embedded runner's leases last unrenewed: a stopped process's runs
    # are taken over this long after its last renewal.
    runner_lease_seconds: float = 60.0
    # Which hosts inputs may be fetched from (shell-style patterns; empty: any host),
    # and how much and for how long one download may take.
    input_url_allow: tuple[str, ...] = ()
    # Networks inputs may be fetched from although they are not public (loopback,
    # private...: refused otherwise), and the ports a URL may name (empty: any).
    input_address_allow: tuple[str, ...] = ()
    input_ports: tuple[str, ...] = ()
    # How many resources a data package may have (a carried descriptor, or one fetched).
    max_resources: int = 1000
    download_max_bytes: int = 100 * 1024 * 1024
    download_timeout: float = 60.0
    # A download that fails for a transient reason (refused, reset, no answer, HTTP 429
    # or 5xx) is tried again this many times, after waits of 0, 2, 4... times the backoff
    # (seconds, plus as much at random) or the server's Retry-After.
    download_retries: int = 3
    download_retry_backoff: float = 1.0
    # How many bytes an archive (zip, xlsx, ods, gzip) may unpack to.
    unpacked_max_bytes: int = 1024 * 1024 * 1024
    # DPP: how long a revision handed over may go without an event before it is FAILED,
    # after how long without one it is checked against DPP's dashboard, and how long a
    # revision may wait for DPP before readiness says DPP is behind.
    dpp_silence_timeout: float = 6 * 3600.0
    dpp_reconcile_after: float = 120.0
    dpp_wait_alert: float = 900.0
    # DPP: how many revisions that need a fetch to be planned may wait in one process
    # for its planners; past that they wait LOADED, in the database, for the sweeper.
    dpp_planning_backlog: int = 64
    # The shortest interval a spec's schedule may ask for, in seconds.
    schedule_min_interval: float = 600.0
    # Per owner, across every process: runs at once (the embedded runner's; on DPP, its
    # planners'), datasets with a schedule, and bytes of specs stored (rates such as
    # "64MiB/hour"; None: no limit). 0: no limit.
    runs_per_owner: int = 1
    schedules_per_owner: int = 10
    spec_bytes_limit: str | None = "64MiB/hour;256MiB/day"
    # Uploads per user (e.g. "120/minute"; None: no limit), counted in this storage.
    upload_rate_limit: str | None = "120/minute"
    rate_limit_storage_uri: str = "memory://"
    # Announcements: where every revision's end is POSTed (http(s) URLs; none: nowhere),
    # the secret that signs them, how many attempts one gets before it is given up, how
    # long one attempt may wait for an answer, the first wait before another (doubled
    # each time), and after how long a waiting one makes readiness "degraded".
    announce_urls: tuple[str, ...] = ()
    announce_secret: str | None = field(default=None, repr=False)
    announce_attempts: int = 20
    announce_timeout: float = 10.0
    announce_backoff: float = 1.0
    announce_alert: float = 900.0
    # Named database connections for `rdbms` outputs: ENGINE_<NAME>=<SQLAlchemy URL>,
    # and the owners each is open to (ENGINE_<NAME>_OWNERS; none named: every owner).
    engines: Mapping[str, str] = field(default_factory=dict, repr=False)
    engine_owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Named npm registries for `npm` outputs (see NpmRegistry).
    npm_registries: Mapping[str, NpmRegistry] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """Where this server is reached from outside (PUBLIC_URL, else its address)."""
        return self.public_url or f"http://{self.host}:{self.port}/"

    def storage_parameters(self) -> dict[str, Any]:
        """The storage as a plan names it: no credentials."""
        if self.storage == "s3":
            found = {
                "kind": "s3",
                "bucket": self.s3_bucket,
                "prefix": self.s3_prefix,
                "endpoint-url": self.s3_endpoint_url,
                "public-url": self.s3_public_url,
                "region": self.s3_region,
            }
            return {key: value for key, value in found.items() if value}
        return {
            "kind": "local",
            "root": str(Path(self.data_dir).resolve()),
            "base-url": f"{self.base_url}data/",
        }

    @property
    def engine_mode(self) -> str:
        """``dpp`` when a datapackage-pipelines deployment is configured, else ``embedded``."""
        return "dpp" if self.dpp_url or self.dpp_pipelines_dir else "embedded"

    def engine_url(self, name: str) -> str | None:
        """The connection URL configured as ENGINE_<NAME> (names are case-insensitive)."""
        return self.engines.get(name.upper())

    def engine_open_to(self, name: str, owner_id: str) -> bool:
        """Whether ``owner_id``'s outputs may write into the connection ENGINE_<NAME>."""
        owners = self.engine_owners.get(name.upper())
        return not owners or owner_id in owners

    def npm_registry(self, name: str) -> NpmRegistry | None:
        """The npm credentials configured as NPM_<NAME>_* (names are case-insensitive)."""
        return self.npm_registries.get(name.upper())

    def npm_environment(self) -> dict[str, str]:
        """Every NPM_<NAME>_* variable, for the processes that run pipelines."""
        return {
            key: value
            for name, registry in self.npm_registries.items()
            for key, value in registry.environment(name).items()
        }

    @property
    def auth_mode(self) -> str:
        """``static`` (AUTH_PUBLIC_KEY), ``remote`` (AUTH_SERVER) or ``local``."""
        if self.auth_public_key:
            return "static"
        if self.auth_server:
            return "remote"
        return "local"


def _text(value: str) -> str | None:
    value = value.strip()
    return value or None


def _storage_kind(value: str) -> str:
    kind = value.strip().lower()
    if kind not in ("local", "s3"):
        raise ValueError("must be local (a folder specstore serves) or s3 (a bucket)")
    return kind


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("must be between 0 and 65535")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must not be negative")
    return number


def _url_base(value: str) -> str | None:
    """A base URL, always ending in '/', so paths can be appended."""
    value = value.strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value if value.endswith("/") else value + "/"


def _public_key(value: str) -> str | None:
    """PEM text as is, or the path of a file holding it."""
    value = value.strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        return value
    try:
        with open(value, encoding="ascii") as handle:
            return handle.read()
    except OSError as exc:
        raise ValueError(f"is neither PEM text nor a readable file ({exc.strerror})") from exc


def _origins(value: str) -> tuple[str, ...]:
    return _list(value) or ("*",)


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _receivers(value: str) -> tuple[str, ...]:
    urls = _list(value)
    for url in urls:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{url!r} is not an http or https URL")
    return urls


def _host_patterns(value: str) -> tuple[str, ...]:
    patterns = tuple(pattern.lower() for pattern in _list(value))
    for pattern in patterns:
        if "/" in pattern:
            raise ValueError(f"{pattern!r} is a URL, not a host name pattern")
    return patterns


def _switch(value: str) -> bool:
    value = value.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise ValueError("must be on or off")


def _rate(value: str) -> str | None:
    value = value.strip()
    if value.lower() in ("", "off", "none"):
        return None
    parse_many(value)  # raises ValueError when it is not a rate such as 60/minute
    return value


def _byte_rate(value: str) -> str | None:
    value = value.strip()
    if value.lower() in ("", "off", "none"):
        return None
    parse_byte_rates(value)  # raises ValueError when it is not a rate such as 64MiB/hour
    return value


def _networks(value: str) -> tuple[str, ...]:
    networks = _list(value)
    parse_networks(networks)  # raises ValueError naming what is not a network
    return networks


def _ports(value: str) -> tuple[str, ...]:
    ports = _list(value)
    parse_ports(ports)  # raises ValueError naming what is not a port or a range
    return ports


# Environment variable -> (Settings field, coercer).
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "DATABASE_URL": ("database_url", lambda value: database_url(value.strip())),
    "DATABASE_FAST_PATH": ("database_fast_path", _switch),
    "AUTH_SERVER": ("auth_server", _text),
    "AUTH_PUBLIC_KEY": ("auth_public_key", _public_key),
    "AUTH_SERVICE": ("auth_service", str.strip),
    "AUTH_AUDIENCE": ("auth_audience", _text),
    "AUTH_TIMEOUT": ("auth_timeout", _positive_float),
    "AUTH_KEY_TTL": ("auth_key_ttl", _positive_float),
    "AUTH_KEY_REFRESH_INTERVAL": ("auth_key_refresh_interval", _positive_float),
    "DPP_URL": ("dpp_url", _url_base),
    "DPP_PIPELINES_DIR": ("dpp_pipelines_dir", _text),
    "PUBLIC_URL": ("public_url", _url_base),
    "HOOK_SECRET": ("hook_secret", _text),
    "HOOK_TOKEN": ("hook_token", _text),
    "OUTPUT_DIR": ("output_dir", str.strip),
    "STORAGE": ("storage", _storage_kind),
    "DATA_DIR": ("data_dir", str.strip),
    "S3_BUCKET": ("s3_bucket", _text),
    "S3_PREFIX": ("s3_prefix", str.strip),
    "S3_ENDPOINT_URL": ("s3_endpoint_url", _text),
    "S3_PUBLIC_URL": ("s3_public_url", _url_base),
    "S3_REGION": ("s3_region", _text),
    "PRESIGNED_URL_SECONDS": ("presigned_url_seconds", _positive_int),
    "PREVIEW_ROWS": ("preview_rows", _positive_int),
    "MAX_CONTENT_LENGTH": ("max_content_length", _positive_int),
    "BODY_TIMEOUT": ("body_timeout", _positive_float),
    "CORS_ORIGINS": ("cors_origins", _origins),
    "HOST": ("host", str.strip),
    "PORT": ("port", _port),
    "RUNNER_WORKERS": ("runner_workers", _count),
    "INPUT_URL_ALLOW": ("input_url_allow", _host_patterns),
    "INPUT_ADDRESS_ALLOW": ("input_address_allow", _networks),
    "INPUT_PORTS": ("input_ports", _ports),
    "MAX_RESOURCES": ("max_resources", _positive_int),
    "RUNS_PER_OWNER": ("runs_per_owner", _count),
    "SCHEDULES_PER_OWNER": ("schedules_per_owner", _count),
    "SPEC_BYTES_LIMIT": ("spec_bytes_limit", _byte_rate),
    "DOWNLOAD_MAX_BYTES": ("download_max_bytes", _positive_int),
    "DOWNLOAD_TIMEOUT": ("download_timeout", _positive_float),
    "DOWNLOAD_RETRIES": ("download_retries", _count),
    "DOWNLOAD_RETRY_BACKOFF": ("download_retry_backoff", _non_negative_float),
    "UNPACKED_MAX_BYTES": ("unpacked_max_bytes", _positive_int),
    "DPP_SILENCE_TIMEOUT": ("dpp_silence_timeout", _positive_float),
    "DPP_RECONCILE_AFTER": ("dpp_reconcile_after", _positive_float),
    "DPP_WAIT_ALERT": ("dpp_wait_alert", _positive_float),
    "DPP_PLANNING_BACKLOG": ("dpp_planning_backlog", _positive_int),
    "SCHEDULE_MIN_INTERVAL": ("schedule_min_interval", _positive_float),
    "UPLOAD_RATE_LIMIT": ("upload_rate_limit", _rate),
    "RATE_LIMIT_STORAGE_URI": ("rate_limit_storage_uri", str.strip),
    "RUN_TIMEOUT": ("run_timeout", _positive_float),
    "ANNOUNCE_URLS": ("announce_urls", _receivers),
    "ANNOUNCE_SECRET": ("announce_secret", _text),
    "ANNOUNCE_ATTEMPTS": ("announce_attempts", _positive_int),
    "ANNOUNCE_TIMEOUT": ("announce_timeout", _positive_float),
    "ANNOUNCE_BACKOFF": ("announce_backoff", _positive_float),
    "ANNOUNCE_ALERT": ("announce_alert", _positive_float),
    "RUNNER_LEASE_SECONDS": ("runner_lease_seconds", _positive_float),
}

ENGINE_PREFIX = "ENGINE_"
# ENGINE_<NAME>_OWNERS: the owners a connection is open to, not a connection.
ENGINE_OWNERS_SUFFIX = "_OWNERS"
_ENGINE_NAME = re.compile(r"^[A-Z0-9_]{1,64}$")

_NPM_VARIABLE = re.compile(r"^NPM_(?P<name>[A-Z0-9_]+?)_(?P<part>REGISTRY|TOKEN|SCOPE)$")
_NPM_SCOPE = re.compile(r"^[a-z0-9][a-z0-9._~-]{0,100}$")

ENVIRONMENT_VARIABLES = tuple(_VARIABLES)


def configure(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Unset or empty variables keep their defaults; ``overrides`` (field names)
    win over the environment, which is how tests configure an app.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (attribute, coerce) in _VARIABLES.items():
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[attribute] = coerce(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r}: {exc}") from exc
    values["engines"], values["engine_owners"] = _engines(environ)
    values["npm_registries"] = _npm_registries(environ)
    values.update(overrides)
    if not values.get("database_url", DEFAULT_DATABASE_URL):
        raise ConfigError("DATABASE_URL must not be empty")
    settings = Settings(**values)
    _check_engines(settings)
    if settings.announce_urls and not settings.announce_secret:
        raise ConfigError(
            "ANNOUNCE_URLS needs ANNOUNCE_SECRET: the secret announcements are signed with"
        )
    if settings.storage == "s3" and not settings.s3_bucket:
        raise ConfigError("STORAGE=s3 needs S3_BUCKET: the bucket runs publish to")
    return settings


def _engines(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """ENGINE_<NAME> connections, and ENGINE_<NAME>_OWNERS, the owners each is open to."""
    engines: dict[str, str] = {}
    owners: dict[str, tuple[str, ...]] = {}
    for variable, value in environ.items():
        if not variable.startswith(ENGINE_PREFIX) or not value.strip():
            continue
        name = variable.removeprefix(ENGINE_PREFIX)
        if not _ENGINE_NAME.match(name):
            raise ConfigError(f"{variable}: connection names are letters, digits and '_'")
        if name.endswith(ENGINE_OWNERS_SUFFIX):
            owners[name.removesuffix(ENGINE_OWNERS_SUFFIX)] = _list(value)
        else:
            engines[name] = sqlalchemy_url(value.strip())
    for name in owners:
        if name not in engines:
            raise ConfigError(
                f"{ENGINE_PREFIX}{name}{ENGINE_OWNERS_SUFFIX}: there is no {ENGINE_PREFIX}{name}"
            )
    return engines, owners


def _same_database(one: str, other: str) -> bool:
    """Whether two SQLAlchemy URLs reach the same database (drivers and credentials aside)."""
    try:
        first, second = make_url(one), make_url(other)
    except ValueError:
        return False
    if first.get_backend_name() != second.get_backend_name():
        return False
    if first.get_backend_name() == "sqlite":
        paths = [
            str(Path(url.database).resolve()) if url.database else "" for url in (first, second)
        ]
        return bool(paths[0]) and paths[0] == paths[1] and first.database != ":memory:"
    return (first.host or "localhost", first.port, first.database) == (
        second.host or "localhost",
        second.port,
        second.database,
    )


def _check_engines(settings: Settings) -> None:
    """No rdbms output may write into specstore's own database."""
    for name, url in settings.engines.items():
        if _same_database(url, settings.database_url):
            raise ConfigError(
                f"{ENGINE_PREFIX}{name}: it is specstore's own database (DATABASE_URL); "
                "give rdbms outputs a database of their own"
            )


def _npm_registries(environ: Mapping[str, str]) -> dict[str, NpmRegistry]:
    """NPM_<NAME>_REGISTRY + NPM_<NAME>_TOKEN (+ NPM_<NAME>_SCOPE) sets, by NAME.

    npm's own NPM_CONFIG_* variables are not credentials and are left alone.
    """
    parts: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        found = _NPM_VARIABLE.match(key)
        if found and found["name"] != "CONFIG" and value.strip():
            parts.setdefault(found["name"], {})[found["part"].lower()] = value.strip()
    registries = {}
    for name, given in sorted(parts.items()):
        missing = [part for part in ("registry", "token") if part not in given]
        if missing:
            raise ConfigError(
                f"NPM_{name}_*: the npm credentials {name} lack "
                + " and ".join(f"NPM_{name}_{part.upper()}" for part in missing)
            )
        try:
            registry = _url_base(given["registry"])
        except ValueError as exc:
            raise ConfigError(f"NPM_{name}_REGISTRY={given['registry']!r}: {exc}") from exc
        scope = given.get("scope", "").removeprefix("@") or None
        if scope is not None and not _NPM_SCOPE.match(scope):
            raise ConfigError(
                f"NPM_{name}_SCOPE={given['scope']!r}: an npm scope is lower-case letters, "
                "digits, '.', '_', '~' and '-'"
            )
        registries[name] = NpmRegistry(str(registry), given["token"], scope)
    return registries
