"""The HTTP API: thin views over :class:`SourceService`, and the one place
where errors become HTTP answers.

Each view reads what it needs from the request, calls one service method and
returns a body from :mod:`specstore.representations`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import representations
from .errors import PayloadTooLarge, SpecstoreError, UnsupportedMediaType
from .service import Page, SourceService, Viewer
from .validation import (
    DOCUMENT_TYPES,
    JSON_TYPES,
    OPENAPI,
    SPEC_SCHEMA,
    parse_document,
    schema_text,
)

log = logging.getLogger(__name__)

bp = Blueprint("source", __name__, url_prefix="/source")


def service() -> SourceService:
    return current_app.extensions["specstore"]


def _auth_token() -> str | None:
    return request.headers.get("Auth-Token") or request.args.get("jwt") or None


def _viewer() -> Viewer:
    return Viewer(service().verifier, _auth_token())


def _body() -> Any:
    """The request body parsed as the document type it says it is."""
    return parse_document(request.get_data(cache=False), request.mimetype)


def _event_body() -> Any:
    """An engine's event: recorded whatever its text holds (see ``storable``)."""
    return parse_document(request.get_data(cache=False), request.mimetype, replace_unstorable=True)


def _check_body(accepted: frozenset[str], allow_missing: bool = False) -> None:
    """Refuse, before anything else is done, a body of the wrong type or size."""
    _require_media_type(accepted, allow_missing)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")


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
    registered = service().upload(_auth_token(), _body)
    return representations.uploaded(registered)


@bp.post("/update")
def update() -> Any:
    _check_body(JSON_TYPES, allow_missing=True)
    token = request.args.get("token") or request.headers.get("X-Hook-Token")
    revision = request.args.get("revision", type=int)
    outcome = service().update(token, _event_body, revision)
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


@bp.get("/<owner_id>")
def datasets(owner_id: str) -> Any:
    page = Page.parse(request.args.get("limit"), request.args.get("offset"))
    return representations.listing(service().list_datasets(owner_id, _viewer(), page))


@bp.get("/<owner_id>/<dataset>/status")
def status(owner_id: str, dataset: str) -> Any:
    found = service().revision(owner_id, dataset, _viewer(), view="status")
    return representations.status(found)


@bp.get("/<owner_id>/<dataset>/info")
def info(owner_id: str, dataset: str) -> Any:
    found = service().revision(owner_id, dataset, _viewer())
    body = representations.info(found, service().engine_record(found))
    body["pipeline"] = service().shown_pipeline(found, body["pipeline"])
    return body


@bp.get("/<owner_id>/<dataset>/<int:number>")
def revision_by_number(owner_id: str, dataset: str, number: int) -> Any:
    found = service().revision(owner_id, dataset, _viewer(), number, view="revision")
    return representations.revision(found)


@bp.get("/<owner_id>/<dataset>/<any(latest, successful):which>")
def revision_by_name(owner_id: str, dataset: str, which: str) -> Any:
    found = service().revision(owner_id, dataset, _viewer(), which, view="revision")
    return representations.revision(found)


def _error_response(status: int, messages: list[str]) -> tuple[Response, int]:
    return jsonify(representations.failure(status, messages)), status


def _specstore_error(error: SpecstoreError) -> tuple[Response, int]:
    return _error_response(error.status, error.messages)


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    message = error.description or error.name
    if status == 429:
        message = f"too many requests: at most {message}, try again later"
    response, _ = _error_response(status, [message])
    for header, value in error.get_headers():
        if header in ("Allow", "Retry-After"):
            response.headers[header] = value
    return response, status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error_response(500, ["internal error"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(SpecstoreError, _specstore_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
