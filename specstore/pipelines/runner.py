"""The embedded runner: specstore runs its pipelines itself, on one machine.

It plans each revision and runs it with ``dataflows`` in a child process
(:mod:`.processes`), off the request path, on a bounded number of worker threads, and
reports progress as the engine's events (queue, start, progress, finish) through the
very path DPP's hooks take.

Revisions wait for a worker fairly across owners (:class:`FairQueue`): each owner's in
a line of their own, the owners served in turn, and at most ``runs_per_owner`` runs of
one owner at once, counted over every process (the run leases in the database). A
revision whose dataset is running elsewhere, or whose owner has all their runs going,
goes back to wait a moment without holding a worker.

Two leases in the database keep runs apart (:mod:`specstore.store.leases`), whatever
process or machine runs them: a revision's, renewed while it waits or runs, and a
dataset's run lease. A process that can no longer renew a lease kills the run it holds:
it is no longer that run's owner. And the pipeline process dies with the server process
that started it (the kernel kills it), so a server killed outright leaves nothing
running.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datapackage_pipelines_specstore.steps import TEMPORARY_DIR

from ..events import FAILED, LOADED, REGISTERED, RUNNING
from ..store.leases import Leases
from ..store.ledger import Ledger
from ..store.records import Handover, RevisionRef
from .engine import Periodic
from .fairness import FairQueue, Workers
from .layout import PlanError
from .planner import Checked, Planner
from .processes import HOST, kill, make_sure_gone, process_identity, read_messages, start_pipeline
from .reports import Reports, emit
from .unchanged import Unchanged

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 2.0
RUN_WAIT_SECONDS = 1.0


@dataclass
class _Run:
    """A run this process holds the dataset's run lease for."""

    ref: RevisionRef
    child: Any = None
    lost: threading.Event = field(default_factory=threading.Event)


class EmbeddedRunner:
    def __init__(
        self,
        ledger: Ledger,
        leases: Leases,
        planner: Planner,
        reports: Reports,
        workers: int,
        timeout: float,
        engines: Mapping[str, str],
        npm_environment: Mapping[str, str] | None = None,
        lease_seconds: float = 60.0,
        sweep_seconds: float | None = None,
        runs_per_owner: int = 0,
        unchanged: Unchanged | None = None,
    ) -> None:
        self.ledger = ledger
        self.unchanged = unchanged
        self.leases = leases
        self.planner = planner
        self.reports = reports
        self.timeout = timeout
        self.runs_per_owner = runs_per_owner
        self.lease_seconds = lease_seconds
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
        self._workers = Workers("specstore-run", workers, self._queue, self._run_guarded)
        # Leases are renewed several times within their length.
        self._sweeper = Periodic(
            "specstore-sweeper",
            sweep_seconds or min(10.0, lease_seconds / 6),
            self.sweep,
            on_failure=self._when_not_renewed,
        )

    # -- the Engine ----------------------------------------------------------------------

    @property
    def stopping(self) -> threading.Event:
        return self._sweeper.stopping

    def start(self) -> None:
        self._workers.start()
        self._sweeper.start()

    def stop(self) -> None:
        """Stop taking work, kill running pipelines and give their leases back."""
        self.stopping.set()
        self._queue.close()
        self._kill_all()
        self._workers.join()
        self._sweeper.stop()
        for ref in list(self._held.values()):
            self.leases.release(ref, self.identity)
        for run in list(self._runs):
            self.leases.release_run(run)

    def prepare(self, ref: RevisionRef, spec: dict[str, Any], checked: Checked) -> Handover | None:
        """Inside the upload's transaction: the new revision is queued here, this process
        holding its lease (it is planned when a worker runs it)."""
        if self.stopping.is_set():
            return None
        return Handover(REGISTERED, lease=(self.identity, self._lease_end()))

    def dispatch(
        self, ref: RevisionRef, spec: dict[str, Any] | None = None, handover: Handover | None = None
    ) -> None:
        """Queue ``ref`` for a worker (which plans it when it runs it): claimed and queued
        now, unless its upload did both (``handover``)."""
        self.start()
        if self.stopping.is_set():
            return
        if handover is not None and handover.lease is not None:
            with self._lock:
                self._held[ref.row_id] = ref
        elif self._claim(ref):
            emit(self.ledger, self.reports, ref, f"{ref.owner_id}/{ref.dataset}", event="queue")
        else:
            return
        self._queue.put(ref.owner_id, ref)

    # -- leases ------------------------------------------------------------------------------

    def _lease_end(self) -> dt.datetime:
        return self.leases.clock() + dt.timedelta(seconds=self.lease_seconds)

    def _claim(self, ref: RevisionRef) -> bool:
        if not self.leases.claim(ref, self.identity, self._lease_end()):
            return False
        with self._lock:
            self._held[ref.row_id] = ref
        return True

    def sweep(self) -> None:
        """Renew the leases this process holds (and kill the runs whose lease is lost);
        take over revisions nobody holds."""
        with self._lock:
            held = list(self._held.values())
            runs = dict(self._runs)
        until = self._lease_end()
        self.leases.renew(held, self.identity, until)
        kept = self.leases.renew_runs(list(runs), until)
        self._renewed = time.monotonic()
        for name, run in runs.items():
            if name not in kept and not run.lost.is_set():
                log.error("%s lost its run lease: killing its pipeline", run.ref.flow_id)
                run.lost.set()
                kill(run.child)
        cutoff = self.ledger.clock() - dt.timedelta(seconds=self._sweeper.seconds)
        for ref in self.ledger.orphaned((LOADED, REGISTERED, RUNNING), cutoff):
            if self.stopping.is_set():
                return
            log.info("taking over %s", ref.flow_id)
            self.dispatch(ref)

    def _when_not_renewed(self) -> None:
        """Leases not renewed for a whole lease are others' to take: the runs stop."""
        if time.monotonic() - self._renewed > self.lease_seconds:
            log.error("leases could not be renewed for %g s: killing runs", self.lease_seconds)
            self._kill_all()

    def _kill_all(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            kill(run.child)

    # -- running -----------------------------------------------------------------------

    def _run_guarded(self, ref: RevisionRef) -> None:
        """Run ``ref`` if its dataset's run lease can be taken now (else it waits again, a
        moment later, still held by this process), then give its lease back."""
        name = f"{self.identity}/{ref.row_id}"
        keep = False
        try:
            run = self._take_run(ref, name)
            if run is None:
                keep = not self.stopping.is_set() and self._queue.put(
                    ref.owner_id, ref, delay=RUN_WAIT_SECONDS
                )
                return
            try:
                self._run(ref, run)
            finally:
                with self._lock:
                    self._runs.pop(name, None)
                self.leases.release_run(name)
        except Exception:
            log.exception("running %s failed", ref.flow_id)
            self.ledger.end(ref, FAILED, ["specstore could not run the pipeline"])
        finally:
            if not keep:
                with self._lock:
                    self._held.pop(ref.row_id, None)
                self.leases.release(ref, self.identity)

    def _take_run(self, ref: RevisionRef, name: str) -> _Run | None:
        """The dataset's run lease, if no other run holds it and the owner has a run to
        spare (None: not now). A lease taken over from a run that stopped renewing it:
        that run's process is made sure to be gone first."""
        taken, left_behind = self.leases.claim_run(
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
        if self.ledger.end_if_superseded(ref):
            return
        spec = self.ledger.spec_of(ref)
        try:
            plan = self.planner.plan(spec, ref.revision, self.planner.descriptor(spec))
            if self.unchanged is not None and self.unchanged.settle(ref, plan):
                return
            plan.write_attachments()
        except PlanError as exc:
            self.ledger.end(ref, exc.state, exc.messages)
            return
        except OSError as exc:
            message = f"the pipeline's files could not be written: {exc.strerror}"
            self.ledger.end(ref, FAILED, [message])
            return
        pipeline_id = plan.main_id
        emit(self.ledger, self.reports, ref, pipeline_id, plan.pipelines, event="start")
        finish = self._execute(ref, run, plan.main, pipeline_id)
        if self.stopping.is_set() or run.lost.is_set():
            return  # killed by a shutdown or a lost lease: left for whoever runs it next
        emit(self.ledger, self.reports, ref, pipeline_id, event="finish", **finish)

    def _execute(
        self, ref: RevisionRef, run: _Run, pipeline: dict[str, Any], pipeline_id: str
    ) -> dict[str, Any]:
        """Run the pipeline in a child process; the body of the finish event. Whatever the
        child leaves in its temporary folders (it may be killed at its deadline) goes when
        it ends."""
        scratch = tempfile.mkdtemp(prefix="specstore-run-")
        staging = self.planner.layout.staging(ref.owner_id, ref.dataset, ref.revision)
        try:
            with tempfile.TemporaryFile(mode="w+") as stderr:
                child = start_pipeline({**self._child_env, "TMPDIR": scratch}, stderr)
                with self._lock:
                    run.child = child
                try:
                    self.leases.note_run_process(
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
                    message = f"the pipeline process ended with exit code {returncode}"
                    finish = {"success": False, "errors": [message]}
            return finish
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if not run.lost.is_set():  # else another process may be running it now
                shutil.rmtree(staging / TEMPORARY_DIR, ignore_errors=True)

    def _follow(
        self, ref: RevisionRef, run: _Run, child: Any, pipeline: dict[str, Any], pipeline_id: str
    ) -> dict[str, Any] | None:
        """Feed the child its pipeline, relay its log as progress events, and return
        its finish report (None if it ended without one)."""
        messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=read_messages, args=(child, messages), daemon=True).start()
        child.stdin.write(json.dumps({"pipeline": pipeline}))
        child.stdin.close()

        pending: list[str] = []
        deadline = time.monotonic() + self.timeout
        next_progress = time.monotonic() + PROGRESS_INTERVAL_SECONDS
        finish: dict[str, Any] | None = None
        while not run.lost.is_set():
            now = time.monotonic()
            if now >= deadline:
                reason = f"the pipeline ran past the time limit of {self.timeout:g} s"
                finish = {"success": False, "errors": [reason]}
                break
            if now >= next_progress and pending:
                emit(self.ledger, self.reports, ref, pipeline_id, event="progress", log=pending)
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
            emit(self.ledger, self.reports, ref, pipeline_id, event="progress", log=pending)
        return finish
