"""The ``specstore`` command line (also ``python -m specstore``)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import requests
from datapackage_pipelines_specstore.fetch import connection_failure
from datapackage_pipelines_specstore.redaction import redact_query
from flask import Flask
from werkzeug.serving import WSGIRequestHandler

from .app import build, create_app
from .auth import LocalKeyPair, issue_token
from .config import ConfigError, configure
from .errors import BadRequest
from .events import FINAL_STATES
from .store.installation import HOOK_TOKEN
from .validation import DOCUMENT_TYPES, normalised, parse_document, spec_validator


def _components():
    try:
        return build(configure())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="specstore", prog_name="specstore")
def main() -> None:
    """specstore: the source spec registry of a data hub.

    Configuration comes from the environment (DATABASE_URL, AUTH_SERVER, ...);
    see docs/reference/configuration.md.
    """


@main.command()
@click.argument("userid")
@click.option("--service", default=None, help="The token's service claim (default AUTH_SERVICE).")
def token(userid: str, service: str | None) -> None:
    """Print a permission token for USERID, signed with the local key pair.

    Only for installations that use their own key pair (neither AUTH_SERVER
    nor AUTH_PUBLIC_KEY set); otherwise the auth service issues tokens.
    """
    components = _components()
    if not isinstance(components.keys, LocalKeyPair):
        raise click.ClickException(
            "tokens are issued by the auth service: AUTH_SERVER or AUTH_PUBLIC_KEY is set"
        )
    components.database.upgrade()
    private_key = components.keys.private_key()
    click.echo(issue_token(private_key, userid, service or components.settings.auth_service))


@main.command("hook-token")
@click.argument("dataset", metavar="OWNERID/DATASET", required=False)
@click.argument("revision", type=click.IntRange(min=1), required=False)
@click.option(
    "--retire",
    is_flag=True,
    help="Forget the single hook token an older release made for this installation.",
)
def hook_token(dataset: str | None, revision: int | None, retire: bool) -> None:
    """Print the credential an engine sends to /source/update with events of REVISION
    of OWNERID/DATASET (the hook URLs written into pipelines carry it).

    With --retire, stop taking the single token older releases used for every event:
    once no revision handed over before the upgrade is still waiting.
    """
    components = _components()
    components.database.upgrade()
    if retire:
        if dataset or revision:
            raise click.UsageError("--retire takes no OWNERID/DATASET or REVISION")
        forgot = components.installation.forget(HOOK_TOKEN)
        click.echo("the old hook token is retired" if forgot else "there was no old hook token")
        if components.settings.hook_token:
            click.echo("HOOK_TOKEN is still set: unset it to retire it too", err=True)
        return
    owner_id, slash, name = (dataset or "").partition("/")
    if not slash or not owner_id or not name or "/" in name or revision is None:
        raise click.UsageError("give OWNERID/DATASET and REVISION")
    click.echo(components.hooks.for_revision(owner_id, name, revision))


_SUFFIX_TYPES = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
}


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check source spec FILES (YAML or JSON) against the schema, offline.

    Prints every problem with its path; exits 1 if any file is invalid.
    """
    failed = False
    for path in files:
        media_type = _SUFFIX_TYPES.get(path.suffix.lower(), "application/yaml")
        assert media_type in DOCUMENT_TYPES
        try:
            problems = _spec_problems(path.read_bytes(), media_type)
        except BadRequest as exc:
            problems = exc.messages
        except OSError as exc:
            problems = [f"cannot read: {exc.strerror}"]
        if problems:
            failed = True
            for problem in problems:
                click.echo(f"{path}: {problem}", err=True)
        else:
            click.echo(f"{path}: valid")
    sys.exit(1 if failed else 0)


def _spec_problems(body: bytes, media_type: str) -> list[str]:
    """What the server would refuse a spec for, before it looks at who sends it: the
    same reading (:func:`normalised`) and the same schema (BadRequest: not readable)."""
    return spec_validator().errors(normalised(parse_document(body, media_type)))


@main.command()
@click.argument("dataset", metavar="OWNERID/DATASET")
@click.option(
    "--url",
    envvar="SPECSTORE_URL",
    default=None,
    help="The server's base URL (default SPECSTORE_URL, else http://HOST:PORT).",
)
@click.option(
    "--token", envvar="SPECSTORE_TOKEN", default=None, help="Auth-Token, for private datasets."
)
@click.option("--wait", is_flag=True, help="Wait until its newest revision has ended.")
@click.option("--timeout", default=1200.0, show_default=True, help="Seconds --wait waits at most.")
def status(dataset: str, url: str | None, token: str | None, wait: bool, timeout: float) -> None:
    """Print a dataset's status from a running server; exit 1 unless it answers 200.
    With --wait, once its newest revision has ended (exit 1 unless it SUCCEEDED)."""
    owner_id, slash, name = dataset.partition("/")
    if not slash or not owner_id or not name or "/" in name:
        raise click.BadParameter("give it as OWNERID/DATASET", param_hint="DATASET")
    headers = {"Auth-Token": token} if token else {}
    base = _server_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = requests.get(
                f"{base}/source/{owner_id}/{name}/status", headers=headers, timeout=10
            )
        except requests.RequestException as exc:
            raise _unreachable(base, exc) from exc
        body = response.json() if response.content else {}
        if not wait or response.status_code != 200 or body.get("state") in FINAL_STATES:
            break
        if time.monotonic() > deadline:
            _fail([f"still {body.get('state')} after {timeout:g} s"])
        time.sleep(1)
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    if response.status_code != 200 or (wait and body.get("state") != "SUCCEEDED"):
        sys.exit(1)


def _server_url(url: str | None) -> str:
    if url is None:
        settings = configure()
        url = f"http://{settings.host}:{settings.port}"
    return url.rstrip("/")


def _unreachable(base: str, exc: requests.RequestException) -> click.ClickException:
    """What to do when the server does not answer."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    reason = connection_failure(cause) if isinstance(exc, requests.ConnectionError) else "no answer"
    return click.ClickException(
        f"{base} cannot be reached: {reason}. Is specstore running there? Start it with "
        "`make run`, or give its address as SPECSTORE_URL (or --url)"
    )


def _owner_token(spec: object) -> str:
    """A token for the spec's owner, from this installation's own key pair (the embedded
    defaults); elsewhere tokens come from the auth service."""
    meta = spec.get("meta") if isinstance(spec, dict) else None
    owner = meta.get("ownerid") if isinstance(meta, dict) else None
    components = _components()
    if not isinstance(components.keys, LocalKeyPair) or not isinstance(owner, str):
        raise click.UsageError("give a permission token: --token or SPECSTORE_TOKEN")
    components.database.upgrade()
    return issue_token(components.keys.private_key(), owner, components.settings.auth_service)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--url",
    envvar="SPECSTORE_URL",
    default=None,
    help="The server's base URL (default SPECSTORE_URL, else http://HOST:PORT).",
)
@click.option(
    "--token",
    envvar="SPECSTORE_TOKEN",
    default=None,
    help="The permission token (default SPECSTORE_TOKEN; on the embedded defaults, one "
    "for the spec's owner from the local key pair).",
)
@click.option("--wait", is_flag=True, help="Follow the revision's status until it ends.")
@click.option("--timeout", default=1200.0, show_default=True, help="Seconds --wait waits at most.")
def upload(file: Path, url: str | None, token: str | None, wait: bool, timeout: float) -> None:
    """Upload the source spec FILE (JSON or YAML) as its dataset's next revision.

    Prints the new revision, or every reason it was refused (exit 1). With --wait,
    follows its status every 2 s and exits 0 only if it SUCCEEDED.
    """
    body = file.read_bytes()
    media_type = _SUFFIX_TYPES.get(file.suffix.lower(), "application/yaml")
    # The spec's own problems first, as the server would name them.
    try:
        problems = _spec_problems(body, media_type)
    except BadRequest as exc:
        problems = exc.messages
    if problems:
        _fail(problems)
    if token is None:
        token = _owner_token(parse_document(body, media_type))
    base = _server_url(url)
    answer = _request("POST", f"{base}/source/upload", token, body, media_type)
    if answer.get("success") is not True:
        _fail(answer.get("errors") or ["the server refused the spec"])
    click.echo(f"uploaded {answer['flow_id']}: revision {answer['revision']} of {answer['id']}")
    if not wait:
        return
    owner_id, name = answer["id"].split("/", 1)
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        status = _request("GET", f"{base}/source/{owner_id}/{name}/status", token)
        state = status.get("state")
        if state != seen:
            click.echo(state)
            seen = state
        if state in FINAL_STATES:
            break
        if time.monotonic() > deadline:
            _fail([f"still {state} after {timeout:g} s"])
        time.sleep(2)
    for error in status.get("errors") or []:
        click.echo(error, err=True)
    sys.exit(0 if state == "SUCCEEDED" else 1)


def _request(
    method: str, url: str, token: str, body: bytes | None = None, media_type: str | None = None
) -> dict:
    headers = {"Auth-Token": token}
    if media_type:
        headers["Content-Type"] = media_type
    try:
        response = requests.request(method, url, data=body, headers=headers, timeout=60)
    except requests.RequestException as exc:
        raise _unreachable(url.split("/source/", 1)[0], exc) from exc
    try:
        answer = response.json()
    except ValueError:
        raise click.ClickException(f"{url} answered {response.status_code}, not JSON") from None
    if response.status_code != 200:
        _fail(answer.get("errors") or [f"{url} answered {response.status_code}"])
    return answer


def _fail(messages: list[str]) -> None:
    for message in messages:
        click.echo(message, err=True)
    sys.exit(1)


@main.command("dpp-serve")
@click.option(
    "--venv",
    "venv",
    default=".venv-dpp",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="DPP's virtualenv (make dpp builds one).",
)
@click.option(
    "--root",
    default="dpp-pipelines",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The pipelines folder: specstore's DPP_PIPELINES_DIR.",
)
@click.option("--workers", default=2, show_default=True, help="How many pipeline workers.")
@click.option(
    "--redis-host",
    default="127.0.0.83",
    show_default=True,
    help="The loopback address Redis listens on (port 6379: DPP uses no other); it asks "
    "for a password made for each start.",
)
@click.option("--dashboard-port", default=5050, show_default=True, help="The dashboard's port.")
def dpp_serve(venv: Path, root: Path, workers: int, redis_host: str, dashboard_port: int) -> None:
    """Run DPP's server mode on this machine, for trying specstore with it: Redis, celery
    beat, the management worker, pipeline workers and the dashboard (on 127.0.0.1), until
    interrupted. The DPP processes get this environment's ENGINE_* and NPM_* variables."""
    from .pipelines.dpp.stack import DppStack, StackError

    if not (venv / "bin" / "dpp").exists():
        raise click.ClickException(f"no DPP in {venv}: run `make dpp`")
    settings = configure()
    environment = {f"ENGINE_{name}": url for name, url in settings.engines.items()}
    environment.update(settings.npm_environment())
    try:
        stack = DppStack(
            venv=venv.resolve(),
            root=root.resolve(),
            workers=workers,
            redis_host=redis_host,
            dashboard_port=dashboard_port,
            environment=environment,
        )
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        stack.start()
    except StackError as exc:
        stack.stop()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"DPP runs pipelines from {stack.root} ({workers} workers); logs in {stack.log_dir}")
    click.echo("Point specstore at it:")
    click.echo(f"  export DPP_PIPELINES_DIR={stack.root} DPP_URL={stack.dashboard_url}")
    # Stopped by SIGTERM as by Ctrl-C: the stack goes down with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while stack.running():
            time.sleep(1)
        click.echo("a DPP process exited: stopping", err=True)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@main.group()
def db() -> None:
    """Database schema management."""


@db.command()
def upgrade() -> None:
    """Apply the migrations to DATABASE_URL (creates the schema on a new database)."""
    click.echo(migrate(_components().database))


@main.command()
def serve() -> None:
    """Migrate the database and serve on HOST:PORT (a development server; for production,
    see docs/how-to/production.md)."""
    serve_development(create_app())


class _RedactingRequestHandler(WSGIRequestHandler):
    """The development server's access log, without secrets from query strings."""

    def log(self, kind: str, message: str, *args: object) -> None:
        super().log(kind, redact_query(message % args if args else message))


def migrate(database: Any) -> str:
    """Bring the database's schema to the newest migration; what was done, in words."""
    before = database.schema_version()
    database.upgrade()
    after = database.schema_version()
    where = database.engine.url.render_as_string()
    if before == after:
        return f"database {where}: schema up to date (migration {after})"
    if before is None:
        return f"database {where}: schema created (migrations up to {after})"
    return f"database {where}: schema migrated from {before} to {after}"


def serve_development(app: Flask) -> None:
    components = app.extensions["specstore.components"]
    click.echo(migrate(components.database), err=True)
    components.start_engine()
    settings = components.settings
    try:
        app.run(
            host=settings.host,
            port=settings.port,
            threaded=True,
            request_handler=_RedactingRequestHandler,
        )
    finally:
        components.close()
