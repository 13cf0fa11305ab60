"""The processes the embedded runner starts, and knows again by host, pid and start time
(pids are reused): each pipeline runs in a child process of its own
(:mod:`specstore.pipelines.flowrunner`), which reports on its standard output."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any

log = logging.getLogger(__name__)

HOST = socket.gethostname()


def start_pipeline(environment: dict[str, str], stderr: IO[str]) -> subprocess.Popen[str]:
    """A child process that runs the pipeline it is sent on its standard input, and dies
    with this one."""
    return subprocess.Popen(  # noqa: S603 (this interpreter, a module of ours)
        [sys.executable, "-m", "specstore.pipelines.flowrunner", "--parent", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=environment,
    )


def read_messages(
    child: subprocess.Popen[str], messages: queue.Queue[dict[str, Any] | None]
) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            message = {"log": line.rstrip("\n")}
        messages.put(message if isinstance(message, dict) else {"log": str(message)})
    messages.put(None)


def kill(child: subprocess.Popen[str] | None) -> None:
    if child is not None and child.poll() is None:
        child.kill()


# -- processes, by host, pid and start time (pids are reused) ---------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time, in clock ticks since boot (/proc/<pid>/stat, field 22)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 (a one-line read of /proc)
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is gone already


def process_identity(pid: int) -> str:
    return f"{HOST}:{pid}:{_start_time(pid) or '?'}"


def make_sure_gone(process: str, wait_seconds: float = 10.0) -> None:
    """Kill the process ``host:pid:start`` if it is on this host and still running, and
    wait until it is gone. On another host it cannot be checked from here: that host's
    own runner kills a run whose lease it lost."""
    host, _, rest = process.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != HOST or not pid_text.isdigit():
        log.info("the run left behind by %s is on another host: its lease has run out", process)
        return
    pid = int(pid_text)
    deadline = time.monotonic() + wait_seconds
    while _start_time(pid) == start:
        log.warning("killing the pipeline process %s left behind by a stopped run", process)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the pipeline process {process} does not go away")
        time.sleep(0.05)
