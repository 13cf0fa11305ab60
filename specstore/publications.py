"""What the API shows of a revision's publication, and where the local backend's files are.

A run reports its publication in its statistics (``stats.publication``, written by
``datapackage_pipelines_specstore.publication``): the descriptor's URL, each output
(name, datahub type, format, bytes, hash, URL, key) and the validation summary. The
API shows them as ``datapackage_url``, ``outputs`` and ``validation``; for a private
dataset in a bucket, whose objects no one reads without credentials, with URLs
presigned for ``PRESIGNED_URL_SECONDS`` (only its owner sees such a dataset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datapackage_pipelines_specstore.storage import LocalStorage, S3Storage, from_parameters

from .store.records import PRIVATE

PUBLICATION_KEY = "publication"


class Publications:
    def __init__(self, storage: dict[str, Any], presigned_seconds: int) -> None:
        self.storage = from_parameters(storage)
        self.presigned_seconds = presigned_seconds

    def local_file(self, owner_id: str, dataset: str, rest: str) -> Path | None:
        """The file the local backend holds under ``<owner_id>/<dataset>/<rest>`` (None:
        not the local backend, no such file, or a key no publication writes)."""
        if not isinstance(self.storage, LocalStorage):
            return None
        try:
            path = self.storage.path(f"{owner_id}/{dataset}/{rest}")
        except ValueError:
            return None
        return path if path.is_file() else None

    def shown(self, stats: Any, findability: str | None) -> dict[str, Any]:
        """``datapackage_url``, ``outputs`` and ``validation`` of a run's statistics (empty:
        it published nothing)."""
        found = stats.get(PUBLICATION_KEY) if isinstance(stats, dict) else None
        if not isinstance(found, dict):
            return {}
        url = self._url_for(findability)
        validation = dict(found.get("validation") or {})
        if "report_key" in validation:
            validation["report_url"] = url(
                validation.pop("report_key"), validation.get("report_url")
            )
        return {
            "datapackage_url": url(found.get("datapackage_key"), found.get("datapackage_url")),
            "outputs": [
                {
                    "name": output.get("name"),
                    "type": output.get("type"),
                    "format": output.get("format"),
                    "bytes": output.get("bytes"),
                    "hash": output.get("hash"),
                    "url": url(output.get("key"), output.get("url")),
                }
                for output in found.get("outputs") or []
            ],
            "validation": validation,
        }

    def _url_for(self, findability: str | None) -> Any:
        storage = self.storage
        if isinstance(storage, S3Storage) and findability == PRIVATE:

            def presigned(key: str | None, url: str | None) -> str | None:
                return storage.presigned_url(key, self.presigned_seconds) if key else url

            return presigned
        return lambda key, url: url


def without_publication(stats: Any) -> Any:
    """The statistics as shown beside the publication (which is shown on its own)."""
    if isinstance(stats, dict) and PUBLICATION_KEY in stats:
        return {key: value for key, value in stats.items() if key != PUBLICATION_KEY}
    return stats
