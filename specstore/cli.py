"""The ``specstore`` command line (also ``python -m specstore``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask
from werkzeug.serving import WSGIRequestHandler

from .app import build, create_app
from .auth import LocalKeyPair, issue_token
from .config import ConfigError, configure
from .errors import BadRequest
from .redaction import redact_query
from .validation import DOCUMENT_TYPES, parse_document, spec_validator


def _components():
    try:
        return build(configure())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """specstore: the source spec registry of a data hub.

    Configuration comes from the environment (DATABASE_URL, AUTH_SERVER, ...);
    see the README.
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
def hook_token() -> None:
    """Print the token the pipeline engine must send to /source/update."""
    components = _components()
    components.database.upgrade()
    click.echo(components.hook_token())


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
            problems = spec_validator().errors(parse_document(path.read_bytes(), media_type))
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


@main.group()
def db() -> None:
    """Database schema management."""


@db.command()
def upgrade() -> None:
    """Apply the migrations to DATABASE_URL (creates the schema on a new database)."""
    components = _components()
    components.database.upgrade()
    click.echo(f"database at head: {components.database.engine.url.render_as_string()}")


@main.command()
def serve() -> None:
    """Migrate the database and serve on HOST:PORT (a development server; see the README)."""
    serve_development(create_app())


class _RedactingRequestHandler(WSGIRequestHandler):
    """The development server's access log, without secrets from query strings."""

    def log(self, kind: str, message: str, *args: object) -> None:
        super().log(kind, redact_query(message % args if args else message))


def serve_development(app: Flask) -> None:
    components = app.extensions["specstore.components"]
    components.database.upgrade()
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
