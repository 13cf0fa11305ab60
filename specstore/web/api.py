"""The HTTP API: thin views over :class:`SourceService`, and the one place
where errors become HTTP answers.

Each view reads what it needs from the request, calls one service method and
returns a body from :mod:`specstore.representations`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import BaseConverter

from ..errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    SpecstoreError,
    TooManyRequests,
    UnsupportedMediaType,
)
from ..service import MAX_INTEGER, Page, SourceService
from ..store.records import DatasetRevision
from ..validation import (
    DOCUMENT_TYPES,
    JSON_TYPES,
    OPENAPI,
    SPEC_SCHEMA,
    load_schema,
    parse_document,
    schema_text,
)
from ..visibility import Viewer
from . import representations

log = logging.getLogger(__name__)

bp = Blueprint("source", __name__, url_prefix="/source")
BODY_CHUNK_BYTES = 64 * 1024
# What may not be an owner id: the names of the routes beside /source/<owner>.
RESERVED_OWNERS = tuple(
    load_schema(SPEC_SCHEMA)["properties"]["meta"]["properties"]["ownerid"]["not"]["enum"]
)


def service() -> SourceService:
    return current_app.extensions["specstore"]


def _auth_token() -> str | None:
    return request.headers.get("Auth-Token") or request.args.get("jwt") or None


def viewer() -> Viewer:
    return Viewer(service().verifier, _auth_token())


def _revision_argument() -> int | None:
    """``?revision=N``, if given: an integer in range, or a 400."""
    given = request.args.get("revision")
    if given is None:
        return None
    if not (given.isascii() and given.isdigit() and 1 <= int(given) <= MAX_INTEGER):
        raise BadRequest(f"revision: must be an integer between 1 and {MAX_INTEGER}")
    return int(given)


def _raw_body() -> bytes:
    """The whole body, read here in chunks, whatever way it is sent:

    * over the limit: :class:`PayloadTooLarge`, whether its ``Content-Length`` says so
      (checked before anything is read) or it comes chunked (werkzeug would cut it at the
      limit without a word: it is read up to one byte past the limit);
    * arriving slower than ``BODY_TIMEOUT`` in all (a client dripping it, or sending less
      than its ``Content-Length``): :class:`RequestTimeout`, long before the server's own
      worker timeout; the socket's timeout is kept to what is left, so no read waits past it.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    seconds = current_app.config["BODY_TIMEOUT"]
    expected = request.content_length
    stream = request.stream if expected is not None else request.environ["wsgi.input"]
    wanted = expected if expected is not None else limit + 1
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    before = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + seconds
    chunks, size = [], 0
    try:
        while size < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(f"the body did not arrive within {seconds:g} s")
            if sock is not None:
                sock.settimeout(remaining)
            try:
                chunk = stream.read(min(BODY_CHUNK_BYTES, wanted - size))
            except (OSError, ClientDisconnected):
                # The socket timed out (werkzeug's server calls that a disconnect), or the
                # client is gone.
                if time.monotonic() >= deadline - 0.1:
                    raise RequestTimeout(f"the body did not arrive within {seconds:g} s") from None
                raise BadRequest("the body ended before all of it arrived") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(before)
    if expected is None and size > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes (MAX_CONTENT_LENGTH)")
    return b"".join(chunks)


def _event_body() -> Any:
    """An engine's event: recorded whatever its text holds (see ``storable``)."""
    return parse_document(_raw_body(), request.mimetype, replace_unstorable=True)


def _check_body(accepted: frozenset[str], allow_missing: bool = False) -> None:
    """Refuse, before anything else is done, a body of the wrong type or size."""
    _require_media_type(accepted, allow_missing)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes (MAX_CONTENT_LENGTH)")


def _require_media_type(accepted: frozenset[str], allow_missing: bool = False) -> None:
    if allow_missing and not request.mimetype:
        return
    if request.mimetype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type must be one of {', '.join(sorted(accepted))}, "
            f"not {request.mimetype or 'nothing'!r}"
        )


@bp.post("/upload")
def upload() -> Any:
    _check_body(DOCUMENT_TYPES)
    registered = service().upload(_auth_token(), _raw_body, request.mimetype)
    return representations.uploaded(registered)


@bp.post("/update")
def update() -> Any:
    _check_body(JSON_TYPES, allow_missing=True)
    token = request.args.get("token") or request.headers.get("X-Hook-Token")
    dataset = request.args.get("dataset")
    outcome = service().update(token, _event_body, dataset, _revision_argument())
    return representations.updated(outcome)


@bp.get("/schema")
def schema() -> Response:
    return Response(schema_text(SPEC_SCHEMA), mimetype="application/schema+json")


@bp.get('/schemas/<any("source-spec.schema.json", "pipeline-event.schema.json"):name>')
def published_schema(name: str) -> Response:
    return Response(schema_text(name), mimetype="application/schema+json")


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(schema_text(OPENAPI), mimetype="application/json")


# The request headers that make a read conditional (RFC 9110, 13.1), as WSGI names them.
CONDITIONS = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
)


def _conditional(body: dict[str, Any]) -> Response:
    """A read's answer with an ``ETag`` (a hash of the body): a poller that sends it
    back in ``If-None-Match`` gets ``304 Not Modified`` and no body while nothing changed
    (werkzeug's conditional responses, for a request that has a condition to evaluate).
    Caches must ask again each time (``no-cache``), and the answer depends on the token
    and, for its CORS headers, on the page's origin."""
    response = Response(current_app.json.dumps(body), mimetype="application/json")
    response.add_etag()
    headers = response.headers
    headers["Cache-Control"] = "no-cache"
    headers["Vary"] = "Auth-Token, Origin"
    environ = request.environ
    if any(name in environ for name in CONDITIONS):
        return response.make_conditional(request)
    return response


@bp.get("/<owner:owner_id>")
def datasets(owner_id: str) -> Response:
    page = Page.parse(request.args.get("limit"), request.args.get("offset"))
    return _conditional(representations.listing(service().list_datasets(owner_id, viewer(), page)))


@bp.get("/<owner:owner_id>/<dataset>/status")
def status(owner_id: str, dataset: str) -> Response:
    found = service().revision(owner_id, dataset, viewer(), view="status")
    return _conditional(representations.status(found, service().published(found)))


@bp.get("/<owner:owner_id>/<dataset>/info")
def info(owner_id: str, dataset: str) -> Response:
    found = service().revision(owner_id, dataset, viewer(), view="info")
    shown = service().shown_pipeline(found)
    answer = representations.info(
        found, shown, service().engine_record(found), service().published(found)
    )
    return _conditional(answer)


@bp.get("/<owner:owner_id>/<dataset>/<int:number>")
def revision_by_number(owner_id: str, dataset: str, number: int) -> Response:
    found = service().revision(owner_id, dataset, viewer(), number, view="revision")
    return _revision_answer(found)


@bp.get("/<owner:owner_id>/<dataset>/<any(latest, successful):which>")
def revision_by_name(owner_id: str, dataset: str, which: str) -> Response:
    found = service().revision(owner_id, dataset, viewer(), which, view="revision")
    return _revision_answer(found)


def _revision_answer(found: DatasetRevision) -> Response:
    return _conditional(representations.revision(found, service().published(found)))


def _error_response(status: int, messages: list[str]) -> tuple[Response, int]:
    return jsonify(representations.failure(status, messages)), status


def _specstore_error(error: SpecstoreError) -> tuple[Response, int]:
    response, status = _error_response(error.status, error.messages)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response, status


# What a path no route matches is told (werkzeug's own words are for a person at a browser).
NO_ROUTE = (
    "no such route: a revision is a number, latest or successful, and every route is "
    "described at /source/openapi.json"
)


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    message = NO_ROUTE if isinstance(error, NoRoute) else error.description
    message = message or error.name
    response, _ = _error_response(status, [message])
    for header, value in error.get_headers():
        if header in ("Allow", "Retry-After"):
            response.headers[header] = value
    return response, status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    # The path as a quoted literal: what a client sent never makes lines of its own.
    log.exception("unhandled error on %s %r", request.method, request.path)
    return _error_response(500, ["internal error"])


class OwnerConverter(BaseConverter):
    """An owner id in a path: not one of the names of the routes beside it, so that
    ``GET /source/upload`` is ``/source/upload``'s 405, never a listing of an owner
    ``upload`` (specs with such owners are refused at upload)."""

    regex = r"(?!(?:" + "|".join(re.escape(name) for name in RESERVED_OWNERS) + r")(?:/|$))[^/]+"


def init_app(app: Flask) -> None:
    app.url_map.converters["owner"] = OwnerConverter
    app.register_blueprint(bp)
    app.register_error_handler(SpecstoreError, _specstore_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
