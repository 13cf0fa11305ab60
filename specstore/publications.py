"""What the API shows of a revision's publication, and where the local backend's files are.

A run reports its publication in its statistics (``stats.publication``, written by
``datapackage_pipelines_specstore.publication``): the descriptor's URL, each output
(name, datahub type, format, bytes, hash, URL, key) and the validation summary. The
API shows them as ``datapackage_url``, ``outputs`` and ``validation``; for a private
dataset in a bucket, whose objects no one reads without credentials, with URLs
presigned for ``PRESIGNED_URL_SECONDS`` (only its owner sees such a dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datapackage_pipelines_specstore.storage import (
    LocalStorage,
    S3Storage,
    StorageError,
    from_parameters,
)

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

    def preview(self, stats: Any, limit: int) -> dict[str, tuple[list[str], list[list[Any]]]]:
        """Each table's fields and first ``limit`` rows (their values in the fields' order),
        by its name, read from its preview (or, for a table too short to have one, its
        JSON, as short): for the dashboard. A table whose rows cannot be read is left out."""
        found = stats.get(PUBLICATION_KEY) if isinstance(stats, dict) else None
        outputs = (found or {}).get("outputs") or []
        by_name = {output.get("name"): output for output in outputs}
        tables = [o for o in outputs if o.get("type") == "source/tabular"]
        previews: dict[str, tuple[list[str], list[list[Any]]]] = {}
        for table in tables:
            name = table["name"]
            output = by_name.get(f"{name}_csv_preview") or by_name.get(f"{name}_json")
            rows = self._rows(output["key"]) if output and output.get("key") else None
            if rows is None:
                continue
            fields = list(table.get("fields") or (rows[0].keys() if rows else []))
            previews[name] = (
                fields,
                [
                    [row.get(field) for field in fields]
                    for row in rows[:limit]
                    if isinstance(row, dict)
                ],
            )
        return previews

    def _rows(self, key: str) -> list[dict[str, Any]] | None:
        try:
            if isinstance(self.storage, LocalStorage):
                data = self.storage.path(key).read_bytes()
            else:
                data = self.storage.read(key)
            rows = json.loads(data)
        except (OSError, ValueError, StorageError):
            return None
        return rows if isinstance(rows, list) else None

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
