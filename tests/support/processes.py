"""The processes a given process started, read from /proc."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Child:
    pid: int
    status: str  # /proc/<pid>/status
    command: str  # the command line, arguments joined by spaces


def children(parent: int) -> list[Child]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        if f"\nPPid:\t{parent}\n" in status:
            found.append(Child(int(entry.name), status, command))
    return found


def running(text: str) -> list[Child]:
    """Every process whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if text in command and "\nState:\tZ" not in status:
            found.append(Child(int(entry.name), status, command))
    return found
