"""``GET /data/<ownerid>/<dataset>/...``: the local backend's published files, under the
dataset's findability (published: to everyone; unlisted: to everyone with the URL;
private: to its owner's token only; to anyone else a private dataset's file is a
missing one). Ranges, ETags and conditional requests as werkzeug answers them."""

from __future__ import annotations

from datapackage_pipelines_specstore.storage import content_type
from flask import Blueprint, Response, send_file

from ..errors import NotFound
from .api import service, viewer

bp = Blueprint("data", __name__, url_prefix="/data")


@bp.get("/<owner_id>/<dataset>/<path:key>")
def published_file(owner_id: str, dataset: str, key: str) -> Response:
    # The dataset first: a private dataset's files are missing ones to strangers.
    service().revision(owner_id, dataset, viewer(), view="status")
    publications = service().publications
    path = publications.local_file(owner_id, dataset, key) if publications else None
    if path is None:
        raise NotFound(f"no file {key} in the publications of {owner_id}/{dataset}")
    response = send_file(
        path, mimetype=content_type(path.name), conditional=True, etag=True, max_age=0
    )
    # Data objects never change under their key (it holds their hash); descriptors do not
    # either, once written. A private dataset's answers are for its owner only.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Vary"] = "Auth-Token, Authorization"
    return response
