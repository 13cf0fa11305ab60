"""The embedded runner: specstore runs its pipelines itself, on one machine.

It plans each revision and runs it with ``dataflows`` in a child process
(:mod:`specstore.pipelines.flowrunner`), off the request path, on a bounded number of
worker threads, and reports progress as the engine's events (queue, start, progress,
finish) through the very path DPP's hooks take.

Revisions wait for a worker fairly across owners (:class:`FairQueue`): each owner's in
a line of their own, the owners served in turn, and at most ``runs_per_owner`` runs of
one owner at once, counted over every process (the run leases in the database). A
revision whose dataset is running elsewhere, or whose owner has all their runs going,
goes back to wait a moment without holding a worker.

Two leases in the database keep runs apart, whatever process or machine runs them:

* a revision's lease: the process that claimed the revision, renewed while it waits
  or runs. A revision whose lease ran out was left behind by a process that stopped,
  and the sweeper of any running process takes it over.
* a dataset's run lease: one run of a dataset at a time. A run waits for it; whoever
  takes over a run lease that ran out first makes sure the process it names is gone.

A process that can no longer renew a lease kills the run it holds: it is no longer
that run's owner. And the pipeline process dies with the server process that started
it (the kernel kills it), so a server killed outright leaves nothing running.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datapackage_pipelines_specstore.steps import TEMPORARY_DIR

from ..events import FAILED, LOADED, REGISTERED, RUNNING
from ..registry import Handover, Registry, RevisionRef
from .fairness import FairQueue
from .planner import Plan, PlanError, Planner
from .reports import Reports, emit

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 2.0
RUN_WAIT_SECONDS = 1.0
HOST = socket.gethostname()


def plan_or_end(
    registry: Registry, planner: Planner, ref: RevisionRef, spec: Any, hooks: list[str]
) -> Plan | None:
    """Plan ``ref`` and write the files its steps read; when it cannot be planned, end
    the revision and return None."""
    try:
        plan = planner.plan(spec, ref.revision, planner.descriptor(spec), hooks=hooks)
        plan.write_attachments()
    except PlanError as exc:
        registry.end(ref, exc.state, exc.messages)
        return None
    except OSError as exc:
        registry.end(ref, FAILED, [f"the pipeline's files could not be written: {exc.strerror}"])
        return None
    return plan


@dataclass
class _Run:
    """A run this process holds the dataset's run lease for."""

    ref: RevisionRef
    child: subprocess.Popen[str] | None = None
    lost: threading.Event = field(default_factory=threading.Event)


class EmbeddedRunner:
    def __init__(
        self,
        registry: Registry,
        planner: Planner,
        reports: Reports,
        workers: int,
        timeout: float,
        engines: Mapping[str, str],
        npm_environment: Mapping[str, str] | None = None,
        lease_seconds: float = 60.0,
        sweep_seconds: float | None = None,
        runs_per_owner: int = 0,
    ) -> None:
        self.registry = registry
        self.planner = planner
        self.reports = reports
        self.workers = workers
        self.timeout = timeout
        self.runs_per_owner = runs_per_owner
        self.lease_seconds = lease_seconds
        # Leases are renewed several times within their length.
        self.sweep_seconds = sweep_seconds or min(10.0, lease_seconds / 6)
        self.identity = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._child_env = {
            **os.environ,
            **{f"ENGINE_{name}": url for name, url in engines.items()},
            **(npm_environment or {}),
        }
        self._lock = threading.Lock()
        self._held: dict[int, RevisionRef] = {}
        self._runs: dict[str, _Run] = {}
        self._renewed = time.monotonic()
        self._queue: FairQueue[RevisionRef] = FairQueue(per_owner=runs_per_owner)
        self._threads: list[threading.Thread] = []
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return  # the common case, on every request: no lock taken
        with self._lock:
            if self._threads or self._stopping.is_set():
                return
            self._threads = [
                threading.Thread(target=self._work, name=f"specstore-run-{number}", daemon=True)
                for number in range(self.workers)
            ]
            for thread in self._threads:
                thread.start()
            self._sweeper = threading.Thread(
                target=self._sweep_forever, name="specstore-sweeper", daemon=True
            )
            self._sweeper.start()

    def stop(self) -> None:
        """Stop taking work, kill running pipelines and give their leases back."""
        self._stopping.set()
        self._queue.close()
        self._kill_all()
        for thread in self._threads:
            thread.join()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        for ref in list(self._held.values()):
            self.registry.release(ref, self.identity)
        for run in list(self._runs):
            self.registry.release_run(run)

    def _kill_all(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            _kill(run.child)

    # -- taking work -----------------------------------------------------------------

    def prepare(self, ref: RevisionRef, spec: dict[str, Any]) -> Handover | None:
        """Inside the upload's transaction: the new revision is queued here, this process
        holding its lease (it is planned when a worker runs it)."""
        if self._stopping.is_set():
            return None
        return Handover(REGISTERED, lease=(self.identity, self._lease_end()))

    def dispatch(
        self, ref: RevisionRef, spec: dict[str, Any] | None = None, handover: Handover | None = None
    ) -> None:
        """Queue ``ref`` for a worker thread (which plans it when it runs): claimed and
        queued now, unless its upload did both (``handover``)."""
        self.start()
        if self._stopping.is_set():
            return
        if handover is not None and handover.lease is not None:
            with self._lock:
                self._held[ref.row_id] = ref
        elif self._claim(ref):
            emit(self.registry, self.reports, ref, f"{ref.owner_id}/{ref.dataset}", event="queue")
        else:
            return
        self._queue.put(ref.owner_id, ref)

    def _lease_end(self) -> dt.datetime:
        return self.registry.clock() + dt.timedelta(seconds=self.lease_seconds)

    def _claim(self, ref: RevisionRef) -> bool:
        if not self.registry.claim(ref, self.identity, self._lease_end()):
            return False
        with self._lock:
            self._held[ref.row_id] = ref
        return True

    def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("the sweep for left-behind revisions failed")
                if time.monotonic() - self._renewed > self.lease_seconds:
                    # Leases not renewed for a whole lease are others' to take: stop.
                    log.error(
                        "leases could not be renewed for %g s: killing runs", self.lease_seconds
                    )
                    self._kill_all()
            self._stopping.wait(self.sweep_seconds)

    def sweep(self) -> None:
        """Renew the leases this process holds (and kill the runs whose lease is lost);
        take over revisions nobody holds."""
        with self._lock:
            held = list(self._held.values())
            runs = dict(self._runs)
        until = self._lease_end()
        self.registry.renew(held, self.identity, until)
        kept = self.registry.renew_runs(list(runs), until)
        self._renewed = time.monotonic()
        for name, run in runs.items():
            if name not in kept and not run.lost.is_set():
                log.error("%s lost its run lease: killing its pipeline", run.ref.flow_id)
                run.lost.set()
                _kill(run.child)
        cutoff = self.registry.clock() - dt.timedelta(seconds=self.sweep_seconds)
        for ref in self.registry.orphaned((LOADED, REGISTERED, RUNNING), cutoff):
            if self._stopping.is_set():
                return
            log.info("taking over %s", ref.flow_id)
            self.dispatch(ref)

    # -- running -----------------------------------------------------------------------

    def _work(self) -> None:
        """A worker: the next revision fairly due, tried until the queue closes."""
        while not self._stopping.is_set():
            taken = self._queue.take()
            if taken is None:
                return
            owner, ref = taken
            try:
                self._run_guarded(ref)
            finally:
                self._queue.done(owner)

    def _run_guarded(self, ref: RevisionRef) -> None:
        """Run ``ref`` if its dataset's run lease can be taken now (else it waits again, a
        moment later, still held by this process), then give its lease back."""
        name = f"{self.identity}/{ref.row_id}"
        keep = False
        try:
            run = self._take_run(ref, name)
            if run is None:
                keep = not self._stopping.is_set() and self._queue.put(
                    ref.owner_id, ref, delay=RUN_WAIT_SECONDS
                )
                return
            try:
                self._run(ref, run)
            finally:
                with self._lock:
                    self._runs.pop(name, None)
                self.registry.release_run(name)
        except Exception:
            log.exception("running %s failed", ref.flow_id)
            self.registry.end(ref, FAILED, ["specstore could not run the pipeline"])
        finally:
            if not keep:
                with self._lock:
                    self._held.pop(ref.row_id, None)
                self.registry.release(ref, self.identity)

    def _take_run(self, ref: RevisionRef, name: str) -> _Run | None:
        """The dataset's run lease, if no other run holds it and the owner has a run to
        spare (None: not now). A lease taken over from a run that stopped renewing it:
        that run's process is made sure to be gone first."""
        taken, left_behind = self.registry.claim_run(
            ref, name, self._lease_end(), self.runs_per_owner
        )
        if not taken:
            return None
        run = _Run(ref)
        with self._lock:
            self._runs[name] = run
        if left_behind:
            make_sure_gone(left_behind)
        return run

    def _run(self, ref: RevisionRef, run: _Run) -> None:
        newer = self.registry.superseded_by(ref)
        if newer is not None:
            self.registry.end(ref, FAILED, [f"superseded by revision {newer} before it ran"])
            return
        plan = plan_or_end(self.registry, self.planner, ref, self.registry.spec_of(ref), hooks=[])
        if plan is None:
            return
        pipeline_id = plan.main_id
        emit(self.registry, self.reports, ref, pipeline_id, plan.pipelines, event="start")
        finish = self._execute(ref, run, plan.main, pipeline_id)
        if self._stopping.is_set() or run.lost.is_set():
            return  # killed by a shutdown or a lost lease: left for whoever runs it next
        emit(self.registry, self.reports, ref, pipeline_id, event="finish", **finish)

    def _execute(
        self, ref: RevisionRef, run: _Run, pipeline: dict[str, Any], pipeline_id: str
    ) -> dict[str, Any]:
        """Run the pipeline in a child process; the body of the finish event. Whatever the
        child leaves in its temporary folders (it may be killed at its deadline) goes when
        it ends."""
        scratch = tempfile.mkdtemp(prefix="specstore-run-")
        staging = self.planner.layout.staging(ref.owner_id, ref.dataset, ref.revision)
        try:
            return self._execute_in(ref, run, pipeline, pipeline_id, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if not run.lost.is_set():  # else another process may be running it now
                shutil.rmtree(staging / TEMPORARY_DIR, ignore_errors=True)

    def _execute_in(
        self, ref: RevisionRef, run: _Run, pipeline: dict[str, Any], pipeline_id: str, scratch: str
    ) -> dict[str, Any]:
        with tempfile.TemporaryFile(mode="w+") as stderr:
            child = subprocess.Popen(  # noqa: S603 (this interpreter, a module of ours)
                [
                    sys.executable,
                    "-m",
                    "specstore.pipelines.flowrunner",
                    "--parent",
                    str(os.getpid()),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**self._child_env, "TMPDIR": scratch},
            )
            with self._lock:
                run.child = child
            try:
                self.registry.note_run_process(
                    f"{self.identity}/{ref.row_id}", process_identity(child.pid)
                )
                finish = self._follow(ref, run, child, pipeline, pipeline_id)
            finally:
                child.kill()
                returncode = child.wait()
            if finish is None:
                stderr.seek(0)
                log.warning(
                    "%s: the pipeline process ended with exit code %s:\n%s",
                    ref.flow_id,
                    returncode,
                    stderr.read()[-4000:],
                )
                finish = {
                    "success": False,
                    "errors": [f"the pipeline process ended with exit code {returncode}"],
                }
        return finish

    def _follow(
        self,
        ref: RevisionRef,
        run: _Run,
        child: subprocess.Popen[str],
        pipeline: dict[str, Any],
        pipeline_id: str,
    ) -> dict[str, Any] | None:
        """Feed the child its pipeline, relay its log as progress events, and return
        its finish report (None if it ended without one)."""
        messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(child, messages), daemon=True).start()
        assert child.stdin is not None
        child.stdin.write(json.dumps({"pipeline": pipeline}))
        child.stdin.close()

        pending: list[str] = []
        deadline = time.monotonic() + self.timeout
        next_progress = time.monotonic() + PROGRESS_INTERVAL_SECONDS
        finish: dict[str, Any] | None = None
        while not run.lost.is_set():
            now = time.monotonic()
            if now >= deadline:
                finish = {
                    "success": False,
                    "errors": [f"the pipeline ran past the time limit of {self.timeout:g} s"],
                }
                break
            if now >= next_progress and pending:
                emit(self.registry, self.reports, ref, pipeline_id, event="progress", log=pending)
                pending = []
                next_progress = now + PROGRESS_INTERVAL_SECONDS
            try:
                message = messages.get(timeout=min(0.5, max(deadline - now, 0.01)))
            except queue.Empty:
                continue
            if message is None:
                break
            if "log" in message:
                pending.append(str(message["log"]))
            elif "finish" in message:
                finish = message["finish"]
        if pending and not run.lost.is_set():
            emit(self.registry, self.reports, ref, pipeline_id, event="progress", log=pending)
        return finish


def _read_lines(child: subprocess.Popen[str], messages: queue.Queue[dict[str, Any] | None]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            message = {"log": line.rstrip("\n")}
        messages.put(message if isinstance(message, dict) else {"log": str(message)})
    messages.put(None)


def _kill(child: subprocess.Popen[str] | None) -> None:
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
