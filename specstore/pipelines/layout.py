"""Where a dataset's pipelines write, and the plan they are: confined to the output
folder, ``OUTPUT_DIR/<ownerid>/<dataset>/``, whatever the spec or its data package says."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datapackage_pipelines_specstore.steps import PLANS_DIR, STAGING_DIR, child

from ..events import INVALID
from .disk import sync_directory, write_file


class PlanError(Exception):
    """The spec cannot become pipelines: INVALID (the spec) or FAILED (its data)."""

    def __init__(self, state: str, *messages: str) -> None:
        super().__init__(*messages)
        self.state = state
        self.messages = list(messages)


@dataclass(frozen=True)
class Plan:
    main_id: str
    pipelines: dict[str, dict[str, Any]]
    # Files the steps read, by path: what is too large to travel as a step's parameters
    # (DPP hands parameters to a processor on its command line).
    attachments: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> dict[str, Any]:
        return self.pipelines[self.main_id]

    def write_attachments(self, sync: bool = False) -> None:
        """Write the attachments where the steps will read them (synced to the disk, if
        asked).

        Each is a file of one revision's, read only by that revision's run, which the
        engine gets once the file is written whole (the DPP pipeline file, the stored
        revision): no reader can find it half written, so it is written in place. A
        temporary file renamed over it would cost a rename, the dearest file system call
        of an upload.
        """
        for path, value in self.attachments.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # dumps, not dump: json.dump streams through the pure-Python encoder.
            write_file(target, json.dumps(value, ensure_ascii=False).encode("utf-8"), sync)
            if sync:
                sync_directory(target.parent)


class OutputLayout:
    """Where a dataset's outputs go, confined to the output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def dataset_dir(self, owner_id: str, dataset: str) -> Path:
        try:
            return child(child(self.root, owner_id), dataset)
        except ValueError as exc:
            raise PlanError(INVALID, f"no output folder for {owner_id}/{dataset}: {exc}") from None

    def revision_paths(self, owner_id: str, dataset: str, revision: int) -> RevisionPaths:
        """Where a revision's run works and what it leaves: the dataset's folder checked
        once."""
        folder = self.dataset_dir(owner_id, dataset)
        return RevisionPaths(
            folder, folder / STAGING_DIR / str(revision), folder / PLANS_DIR / f"{revision}.json"
        )

    def staging(self, owner_id: str, dataset: str, revision: int) -> Path:
        return self.revision_paths(owner_id, dataset, revision).staging


@dataclass(frozen=True)
class RevisionPaths:
    folder: Path  # the dataset's: its published outputs
    staging: Path  # the run's work, published into the folder when it succeeds
    metadata: Path  # the descriptor's properties, for the run's last step
