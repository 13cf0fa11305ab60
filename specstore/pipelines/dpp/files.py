"""The pipelines folder a DPP deployment runs in, as specstore writes it.

DPP has no API to submit pipelines: it walks its working folder for files that define
them. Each dataset's pipelines are a file of their own,
``<DPP_PIPELINES_DIR>/<ownerid>/<dataset>/specstore.source-spec.yaml``, which DPP hands
to specstore's plugin (``datapackage_pipelines_specstore.Generator``) and runs under the
ids ``./<ownerid>/<dataset>``. A write replaces that file whole (:func:`.writer.replace`),
under a lock beside it, so DPP never reads half a file and a newer revision's pipelines
are never replaced by an older one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datapackage_pipelines_specstore.generator import FILE_NAME
from datapackage_pipelines_specstore.steps import child

from ..planner import REVISION_KEY
from .writer import document, pipelines_in, replace

# A dataset's pipelines, read by specstore's plugin in DPP.
DATASET_FILE = FILE_NAME
# Beside each file, the lock its writers take (DPP reads no name starting with a dot).
LOCK_FILE = ".specstore.lock"


def folder_name(name: str) -> str:
    """The folder for an owner id or a dataset name (safe path segments: see the spec's
    schema). DPP skips folders whose names start with a dot, so a leading dot is written
    ``%2E``, which no name holds."""
    return "%2E" + name[1:] if name.startswith(".") else name


class DppPipelines:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def owner_dir(self, owner_id: str) -> Path:
        return child(self.root, folder_name(owner_id))

    def dataset_dir(self, owner_id: str, dataset: str) -> Path:
        return child(self.owner_dir(owner_id), folder_name(dataset))

    def read(self, owner_id: str) -> dict[str, Any]:
        """The owner's pipelines, by id without the owner (``<dataset>``, or
        ``<dataset>:<suffix>``)."""
        found = {}
        for path in sorted(self.owner_dir(owner_id).glob(f"*/{DATASET_FILE}")):
            pipelines = pipelines_in(path.read_bytes())
            found.update({key.split("/", 1)[1]: value for key, value in pipelines.items()})
        return found

    def revision(self, owner_id: str, dataset: str) -> int | None:
        """The revision whose pipelines the dataset's file holds; None: no file, or none
        that reads (a rename is atomic: no lock needed to read it)."""
        return _revision_in(_contents(self.dataset_dir(owner_id, dataset) / DATASET_FILE)) or None

    def write(
        self,
        owner_id: str,
        dataset: str,
        pipelines: dict[str, dict[str, Any]],
        sync: bool = False,
    ) -> Written:
        """Make ``pipelines`` (ids ``<ownerid>/<dataset>...``, one revision's) the dataset's.

        When the dataset's pipelines are from a newer revision, nothing is written and the
        answer names them, with that revision's number (``newer``). Otherwise the file is
        replaced whole (and synced to the disk, if asked), and the answer keeps what it
        held before, for :meth:`take_back`.
        """
        written = Written(owner_id, dataset, _revision_of(pipelines))
        with self._dataset_file(owner_id, dataset) as path:
            written.previous = _contents(path)
            there = _revision_in(written.previous)
            if there is not None and there > written.revision:
                written.newer = dict.fromkeys(pipelines, there)
                return written
            replace(path, document(pipelines), sync)
            written.wrote = True
        return written

    def take_back(self, written: Written) -> None:
        """Put back what :meth:`write` replaced, where the file still holds what it wrote
        (a write whose revision was never stored must not be run)."""
        if not written.wrote:
            return
        with self._dataset_file(written.owner_id, written.dataset) as path:
            if _revision_in(_contents(path)) != written.revision:
                return
            if written.previous is None:
                path.unlink()
            else:
                replace(path, written.previous, sync=False)

    @contextlib.contextmanager
    def _dataset_file(self, owner_id: str, dataset: str) -> Iterator[Path]:
        """The dataset's file, its folder made and its lock held for the block."""
        directory = self.dataset_dir(owner_id, dataset)
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory / LOCK_FILE):
            yield directory / DATASET_FILE


@dataclass
class Written:
    """What one :meth:`DppPipelines.write` did: nothing, because the dataset's pipelines
    were from a newer revision (``newer``, id -> that revision), or wrote (``wrote``) the
    dataset's file over what it held (``previous``, None: no file)."""

    owner_id: str
    dataset: str
    revision: int
    newer: dict[str, int] = field(default_factory=dict)
    previous: bytes | None = None
    wrote: bool = False


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # which lets go of the lock too


def _revision_of(pipelines: dict[str, Any]) -> int:
    return max(
        (
            details.get(REVISION_KEY, 0) if isinstance(details, dict) else 0
            for details in pipelines.values()
        ),
        default=0,
    )


def _contents(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _revision_in(data: bytes | None) -> int | None:
    """The revision a dataset's file (its bytes) holds the pipelines of; None: no file."""
    return None if data is None else _revision_of(pipelines_in(data))
