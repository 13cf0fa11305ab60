"""datapackage-pipelines (DPP): writing pipelines where DPP finds them, and
reading its dashboard's record of a pipeline.

DPP has no API to submit pipelines: it walks its working folder, and every
top-level key of a ``pipeline-spec.yaml`` is a pipeline whose id is
``./<folder>/<key>``. So an owner's datasets are the keys of
``<DPP_PIPELINES_DIR>/<ownerid>/pipeline-spec.yaml``. Writing one dataset's
pipelines is a read-modify-write of that shared file, done under an exclusive
lock on a lock file beside it and finished by an atomic rename, so concurrent
uploads of one owner's datasets never lose each other's pipelines and DPP
never reads half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .http_client import HttpClient, PeerUnavailable
from .planner import REVISION_KEY

SPEC_FILE = "pipeline-spec.yaml"
LOCK_FILE = ".pipeline-spec.lock"  # DPP skips dot files


class DppPipelines:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def owner_dir(self, owner_id: str) -> Path:
        path = (self.root / owner_id).resolve()
        if path.parent != self.root:
            raise ValueError(f"{owner_id!r} is not a folder name")
        return path

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self, owner_id: str) -> dict[str, Any]:
        path = self.owner_dir(owner_id) / SPEC_FILE
        if not path.exists():
            return {}
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def write(self, owner_id: str, pipelines: dict[str, dict[str, Any]]) -> None:
        """Put ``pipelines`` (ids ``<ownerid>/<key>``) into the owner's spec file.

        A pipeline already there from a newer revision is left as it is.
        """
        directory = self.owner_dir(owner_id)
        with self._locked(directory):
            current = self.read(owner_id)
            for pipeline_id, details in pipelines.items():
                key = pipeline_id.split("/", 1)[1]
                existing = current.get(key) or {}
                if existing.get(REVISION_KEY, 0) > details.get(REVISION_KEY, 0):
                    continue
                current[key] = details
            text = yaml.safe_dump(current, sort_keys=True, allow_unicode=True)
            handle, temporary = tempfile.mkstemp(prefix=".pipeline-spec.", dir=directory)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(temporary, 0o644)
                os.replace(temporary, directory / SPEC_FILE)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                raise


# DPP's states, as specstore names them.
DPP_STATES = {"INIT": "REGISTERED", "QUEUED": "REGISTERED"}
DASHBOARD_FIELDS = (
    "state",
    "message",
    "success",
    "error_log",
    "reason",
    "stats",
    "trigger",
    "dirty",
    "cache_hash",
    "queued",
    "started",
    "ended",
    "last_success",
    "pipeline",
)


class DppDashboard:
    """DPP's dashboard, asked with a short timeout: when it does not answer, nobody waits."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self.base_url = base_url

    def record(self, pipeline_id: str, revision: int) -> dict[str, Any] | None:
        """DPP's record of the pipeline if it is of ``revision``; None when there is none."""
        try:
            record = self._http.get(f"{self.base_url}api/raw/{pipeline_id}").json()
        except (PeerUnavailable, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        pipeline = record.get("pipeline") or {}
        if not isinstance(pipeline, dict) or pipeline.get(REVISION_KEY) != revision:
            return None
        found = {key: record[key] for key in DASHBOARD_FIELDS if key in record}
        if "state" in found:
            found["state"] = DPP_STATES.get(found["state"], found["state"])
        return found
