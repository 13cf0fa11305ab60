"""The engines that turn a stored revision into a run.

* :class:`EmbeddedRunner` (no DPP configured): plans each revision and runs
  it with ``dataflows`` in a child process (:mod:`specstore.flowrunner`), off
  the request path, in a bounded pool of worker threads.
* :class:`DppDispatcher` (``DPP_PIPELINES_DIR`` set): plans each revision and
  writes it into the DPP deployment's folder, where DPP runs it and reports
  back through its hooks.

Both report progress as the engine's events (queue, start, progress, finish)
through the very path DPP's hooks take: :meth:`PipelineEvent.from_payload`
then :meth:`Registry.apply_event`.

The embedded runner claims a revision with a lease in the database before it
runs it and renews the lease while the revision waits or runs. A revision
whose lease ran out was left behind by a process that stopped: the sweeper of
any running process picks it up again, so nothing stays RUNNING forever.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .dpp import DppPipelines
from .events import FAILED, LOADED, REGISTERED, RUNNING, PipelineEvent
from .planner import Plan, PlanError, Planner
from .registry import Registry, RevisionRef

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 2.0


def emit(
    registry: Registry,
    ref: RevisionRef,
    pipeline_id: str,
    plan: dict[str, Any] | None = None,
    **payload: Any,
) -> None:
    """Record an engine event exactly as if DPP's hook had posted it (with, when a
    revision is handed over, its plan, in the same transaction)."""
    body = {"pipeline_id": f"./{pipeline_id}", **payload}
    registry.apply_event(PipelineEvent.from_payload(body, ref.revision), plan)


def _plan(
    registry: Registry, planner: Planner, ref: RevisionRef, spec: Any, hooks: list[str]
) -> Plan | None:
    """Plan ``ref``; when it cannot be planned, end the revision and return None."""
    try:
        return planner.plan(spec, ref.revision, planner.descriptor(spec), hooks=hooks)
    except PlanError as exc:
        registry.end(ref, exc.state, exc.messages)
        return None


class DppDispatcher:
    """Hands revisions to a datapackage-pipelines deployment by writing its pipeline files."""

    def __init__(
        self,
        registry: Registry,
        planner: Planner,
        pipelines: DppPipelines,
        hook_url: Any,
    ) -> None:
        self.registry = registry
        self.planner = planner
        self.pipelines = pipelines
        self._hook_url = hook_url
        self._started = False

    def dispatch(self, ref: RevisionRef, spec: dict[str, Any] | None = None) -> None:
        """Plan ``ref`` (its ``spec`` if the caller has it at hand), write its pipelines
        where DPP finds them, then record the plan and the queue event in one go."""
        if spec is None:
            spec = self.registry.spec_of(ref)
        plan = _plan(self.registry, self.planner, ref, spec, [self._hook_url(ref.revision)])
        if plan is None:
            return
        try:
            self.pipelines.write(ref.owner_id, plan.pipelines)
        except OSError as exc:
            self.registry.end(ref, FAILED, [f"the pipeline could not be written for DPP: {exc}"])
            return
        emit(self.registry, ref, plan.main_id, plan.pipelines, event="queue")

    def start(self) -> None:
        """Hand over, in the background, what a stopped server stored but never handed over."""
        if self._started:
            return
        self._started = True
        threading.Thread(target=self._recover, name="specstore-dpp-recovery", daemon=True).start()

    def _recover(self) -> None:
        cutoff = self.registry.clock() - dt.timedelta(seconds=30)
        try:
            for ref in self.registry.orphaned((LOADED,), cutoff, newest_only=True):
                self.dispatch(ref)
        except Exception:
            log.exception("handing left-behind revisions to DPP failed")

    def stop(self) -> None:
        pass


class EmbeddedRunner:
    def __init__(
        self,
        registry: Registry,
        planner: Planner,
        workers: int,
        timeout: float,
        engines: Mapping[str, str],
        downloads: Mapping[str, Any],
        npm_environment: Mapping[str, str] | None = None,
        lease_seconds: float = 60.0,
        sweep_seconds: float = 10.0,
    ) -> None:
        self.registry = registry
        self.planner = planner
        self.workers = workers
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.sweep_seconds = sweep_seconds
        self.downloads = dict(downloads)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._child_env = {
            **os.environ,
            **{f"ENGINE_{name}": url for name, url in engines.items()},
            **(npm_environment or {}),
        }
        self._lock = threading.Lock()
        self._held: dict[int, RevisionRef] = {}
        self._dataset_locks: dict[tuple[str, str], threading.Lock] = {}
        self._children: set[subprocess.Popen[str]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._sweeper: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._pool is not None:
            return  # the common case, on every request: no lock taken
        with self._lock:
            if self._pool is not None or self._stopping.is_set():
                return
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="specstore-run")
            self._sweeper = threading.Thread(
                target=self._sweep_forever, name="specstore-sweeper", daemon=True
            )
            self._sweeper.start()

    def stop(self) -> None:
        """Stop taking work, kill running pipelines and give their revisions back."""
        self._stopping.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            child.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        for ref in list(self._held.values()):
            self.registry.release(ref, self.identity)

    # -- taking work -----------------------------------------------------------------

    def dispatch(self, ref: RevisionRef, spec: dict[str, Any] | None = None) -> None:
        """Claim ``ref`` and queue it for a worker thread (which plans it when it runs)."""
        self.start()
        if self._stopping.is_set() or not self._claim(ref):
            return
        emit(self.registry, ref, f"{ref.owner_id}/{ref.dataset}", event="queue")
        assert self._pool is not None
        self._pool.submit(self._run_guarded, ref)

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
            self._stopping.wait(self.sweep_seconds)

    def sweep(self) -> None:
        """Renew the leases this process holds; take over revisions nobody holds."""
        with self._lock:
            held = list(self._held.values())
        self.registry.renew(held, self.identity, self._lease_end())
        cutoff = self.registry.clock() - dt.timedelta(seconds=self.sweep_seconds)
        for ref in self.registry.orphaned((LOADED, REGISTERED, RUNNING), cutoff):
            if self._stopping.is_set():
                return
            log.info("taking over %s/%s revision %s", ref.owner_id, ref.dataset, ref.revision)
            self.dispatch(ref)

    # -- running -----------------------------------------------------------------------

    def _dataset_lock(self, ref: RevisionRef) -> threading.Lock:
        with self._lock:
            return self._dataset_locks.setdefault((ref.owner_id, ref.dataset), threading.Lock())

    def _run_guarded(self, ref: RevisionRef) -> None:
        try:
            with self._dataset_lock(ref):
                if not self._stopping.is_set():
                    self._run(ref)
        except Exception:
            log.exception(
                "running %s/%s revision %s failed", ref.owner_id, ref.dataset, ref.revision
            )
            self.registry.end(ref, FAILED, ["specstore could not run the pipeline"])
        finally:
            with self._lock:
                self._held.pop(ref.row_id, None)
            self.registry.release(ref, self.identity)

    def _run(self, ref: RevisionRef) -> None:
        newer = self.registry.superseded_by(ref)
        if newer is not None:
            self.registry.end(ref, FAILED, [f"superseded by revision {newer} before it ran"])
            return
        plan = _plan(self.registry, self.planner, ref, self.registry.spec_of(ref), hooks=[])
        if plan is None:
            return
        pipeline_id = plan.main_id
        emit(self.registry, ref, pipeline_id, plan.pipelines, event="start")
        finish = self._execute(ref, plan.main, pipeline_id)
        if self._stopping.is_set():
            return  # killed by a shutdown: left for the next start to run again
        emit(self.registry, ref, pipeline_id, event="finish", **finish)

    def _execute(
        self, ref: RevisionRef, pipeline: dict[str, Any], pipeline_id: str
    ) -> dict[str, Any]:
        """Run the pipeline in a child process; the body of the finish event."""
        with tempfile.TemporaryFile(mode="w+") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-m", "specstore.flowrunner"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self._child_env,
            )
            with self._lock:
                self._children.add(child)
            try:
                finish = self._follow(ref, child, pipeline, pipeline_id)
            finally:
                child.kill()
                returncode = child.wait()
                with self._lock:
                    self._children.discard(child)
            if finish is None:
                stderr.seek(0)
                tail = stderr.read().strip().splitlines()[-20:]
                finish = {
                    "success": False,
                    "errors": [f"the pipeline process ended with exit code {returncode}", *tail],
                }
        return finish

    def _follow(
        self,
        ref: RevisionRef,
        child: subprocess.Popen[str],
        pipeline: dict[str, Any],
        pipeline_id: str,
    ) -> dict[str, Any] | None:
        """Feed the child its pipeline, relay its log as progress events, and return
        its finish report (None if it ended without one)."""
        messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=_read_lines, args=(child, messages), daemon=True).start()
        assert child.stdin is not None
        child.stdin.write(json.dumps({"pipeline": pipeline, "downloads": self.downloads}))
        child.stdin.close()

        pending: list[str] = []
        deadline = time.monotonic() + self.timeout
        next_progress = time.monotonic() + PROGRESS_INTERVAL_SECONDS
        finish: dict[str, Any] | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                finish = {
                    "success": False,
                    "errors": [f"the pipeline ran past the time limit of {self.timeout:g} s"],
                }
                break
            if now >= next_progress and pending:
                emit(self.registry, ref, pipeline_id, event="progress", log=pending)
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
        if pending:
            emit(self.registry, ref, pipeline_id, event="progress", log=pending)
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
