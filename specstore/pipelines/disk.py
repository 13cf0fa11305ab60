"""Files written for a pipeline, and made to reach the disk when asked.

An upload does not wait for its files to reach the disk (the database is the record,
and the sweep writes again what a crash lost); what the sweep writes is synced, file
and folder, so that it is not lost a second time.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_file(path: Path, data: bytes, sync: bool) -> None:
    """Write ``data`` to ``path`` (made or emptied first), synced to the disk if asked."""
    with open(path, "wb") as out:
        out.write(data)
        if sync:
            out.flush()
            os.fsync(out.fileno())


def sync_directory(directory: Path) -> None:
    """Make what was created, renamed or removed in ``directory`` reach the disk."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
