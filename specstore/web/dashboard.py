"""The dashboard: a few server-rendered HTML pages over the same service as the API.

No build step and no script: plain HTML and a little CSS. A dataset's page
refreshes itself every few seconds while its newest revision is on its way.
Private datasets show only to their owner, who passes their token as ``?jwt=``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, render_template, request

from ..errors import NotFound, SpecstoreError
from ..events import FINAL_STATES
from ..service import Page, SourceService
from ..store.records import pipeline_id
from ..visibility import Viewer
from .representations import STATUS_LOG_LINES

bp = Blueprint("dashboard", __name__, template_folder="templates")
REFRESH_SECONDS = 3
# Rows of each table a dataset's page shows.
PREVIEW_ROWS = 20


TITLES = {400: "Bad request", 401: "Not signed in", 403: "Forbidden", 404: "Not found"}


@bp.errorhandler(SpecstoreError)
def error_page(error: SpecstoreError) -> Any:
    """A page's error as a page (the API answers JSON): a browser shows it."""
    title = TITLES.get(error.status, "Something went wrong")
    page = render_template("error.html", status=error.status, title=title, messages=error.messages)
    return page, error.status


def _service() -> SourceService:
    return current_app.extensions["specstore"]


def _viewer() -> Viewer:
    token = request.args.get("jwt") or request.headers.get("Auth-Token") or None
    return Viewer(_service().verifier, token)


@bp.get("/")
def index() -> Any:
    owner = request.args.get("owner") or None
    page = Page.parse(request.args.get("limit"), request.args.get("offset"))
    listing = _service().list_datasets(owner, _viewer(), page)
    return render_template("index.html", listing=listing, owner=owner, page=page)


@bp.get("/datasets/<owner_id>/<dataset>")
def dataset(owner_id: str, dataset: str) -> Any:
    viewer = _viewer()
    found = _service().revision(owner_id, dataset, viewer)
    revisions = _service().visible_revisions(found, viewer)
    revision = found.revision
    shown = _service().shown_pipeline(found)
    published, published_by = _service().published(found), revision.revision
    if not published and revision.state != "SUCCEEDED":
        try:
            good = _service().revision(owner_id, dataset, viewer, "successful", "revision")
            published, published_by = _service().published(good), good.revision.revision
            stats = good.revision.stats
        except NotFound:
            stats = None
    else:
        stats = revision.stats
    publications = _service().publications
    previews = publications.preview(stats, PREVIEW_ROWS) if publications and published else {}
    return render_template(
        "dataset.html",
        found=found,
        revision=revision,
        revisions=revisions,
        pipelines=json.dumps({pipeline_id(owner_id, dataset): json.loads(shown)}, indent=2)
        if shown
        else None,
        logs=revision.logs[-STATUS_LOG_LINES:],
        published=published,
        published_by=published_by,
        previews=previews,
        refresh=REFRESH_SECONDS if revision.state not in FINAL_STATES else None,
    )
