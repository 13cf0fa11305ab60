"""datapackage-pipelines (DPP) as specstore's engine: revisions handed over by writing
their pipelines where DPP finds them (:mod:`.files`), and never a revision left waiting
for a word from DPP that does not come.

An upload does not wait for its files to reach the disk: the database, which does, is
the record. What a crash of the machine can lose of them (the file, or the rename, or
the plan's metadata file) the first sweep after the machine boots again finds missing
from a revision still REGISTERED, and writes again, synced.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ...events import FAILED, LOADED, REGISTERED, RUNNING, SUCCEEDED
from ...store.ledger import Ledger
from ...store.records import Handover, RevisionRef, superseded
from ..engine import Periodic
from ..fairness import FairQueue, Workers
from ..layout import PlanError
from ..planner import Checked, Planner
from ..reports import Reports, emit
from ..resources import given_descriptor
from ..unchanged import Unchanged
from .dashboard import DppDashboard
from .files import DppPipelines

log = logging.getLogger(__name__)

# How long (s) a revision left LOADED waits before the sweep takes it up: an upload or a
# planner may still be at it.
LEFT_AFTER = 30
# How much of DPP's log a revision brought up to date by reconciliation keeps.
MAX_RECONCILED_LOG_LINES = 100


def machine_booted() -> dt.datetime:
    """When this machine last booted (what a crash of it lost was written before); where
    the system does not say (CLOCK_BOOTTIME is Linux's), now: all that came before."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    up = time.clock_gettime(clock) if clock is not None else 0.0
    return dt.datetime.fromtimestamp(time.time() - up, dt.UTC)


class DppDispatcher:
    """Hands revisions to a datapackage-pipelines deployment by writing its pipeline files.

    A spec that carries its data package is planned and handed over during the upload
    (no network involved); one that does not is planned in the background, where its
    data package is fetched, by ``planners`` threads with at most ``backlog`` revisions
    waiting for them: past that, a revision stays LOADED in the database for the sweeper,
    so that a flood of such uploads holds no more memory than that. They wait fairly
    across owners (:class:`FairQueue`): the owners served in turn, at most
    ``per_owner`` of one owner's planned at once. A sweeper, in every server process:

    * gives the planners what a stopped server stored, or this one had no room to plan,
      but never handed over (LOADED);
    * hands over again, its files synced, a revision waiting for DPP (REGISTERED) whose
      pipeline file or plan is not on the disk as its upload left them. Only what was
      handed over before the machine last booted (``booted``) can have been lost that
      way: the process's first sweep looks at those, once (they may be many, should DPP
      be down);
    * reconciles: a revision DPP has sent no event about for ``reconcile_after`` is
      looked up on DPP's dashboard (its record of the pipeline, if it is of this
      revision) and brought to the state DPP recorded, so a hook that never arrived
      (specstore restarting, say: DPP never retries one) leaves nothing waiting;
    * ends FAILED, with the reason, a revision neither DPP's hooks nor its dashboard
      have said anything about for ``silence_timeout``.
    """

    def __init__(
        self,
        ledger: Ledger,
        planner: Planner,
        reports: Reports,
        pipelines: DppPipelines,
        hook_url: Callable[[RevisionRef], str],
        silence_timeout: float,
        reconcile_after: float = 120.0,
        dashboard: DppDashboard | None = None,
        planners: int = 2,
        backlog: int = 64,
        sweep_seconds: float | None = None,
        per_owner: int = 0,
        unchanged: Unchanged | None = None,
    ) -> None:
        self.ledger = ledger
        self.unchanged = unchanged
        self.planner = planner
        self.reports = reports
        self.pipelines = pipelines
        self.dashboard = dashboard
        self.silence_timeout = silence_timeout
        self.reconcile_after = min(reconcile_after, silence_timeout)
        self._hook_url = hook_url
        self._waiting: FairQueue[tuple[RevisionRef, dict[str, Any] | None]] = FairQueue(
            per_owner=per_owner, capacity=planners + backlog
        )
        self._planners = Workers("specstore-plan", planners, self._waiting, self._plan)
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._sweeper = Periodic(
            "specstore-dpp-sweeper",
            sweep_seconds or min(30.0, self.reconcile_after / 2),
            self.sweep,
        )
        self.booted = machine_booted()
        self._lost_looked_for = False

    # -- the Engine --------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper.start()

    def stop(self) -> None:
        self._sweeper.stop(wait=0)
        self._waiting.close()

    def prepare(self, ref: RevisionRef, spec: dict[str, Any], checked: Checked) -> Handover | None:
        """Inside the upload's transaction: a spec that carries its data package is
        planned (its resources as checked) and its pipelines written where DPP finds them
        (no network involved); one that does not is left LOADED, to be planned in the
        background (None)."""
        if checked.resources is None:
            return None
        return self._take(ref, spec, resources=checked.resources)

    def dispatch(
        self, ref: RevisionRef, spec: dict[str, Any] | None = None, handover: Handover | None = None
    ) -> None:
        """Hand ``ref`` over, unless its upload did (``handover``): now when its spec (if
        the caller has it at hand) carries its data package, else in the background."""
        if handover is not None:
            return
        # A scheduled revision may ask its sources whether they changed: never here.
        if spec is not None and given_descriptor(spec) is not None and not ref.scheduled:
            self.hand_over(ref, spec)
        elif not self._enqueue(ref, spec):
            log.info("%s: the planners are busy; it waits LOADED for the sweeper", ref.flow_id)

    # -- planning in the background ------------------------------------------------------

    def _enqueue(self, ref: RevisionRef, spec: dict[str, Any] | None) -> bool:
        """Give ``ref`` to the planners, in its owner's turn; False when they have no room
        (it waits LOADED for the sweeper). A revision they have already is not given twice."""
        self._planners.start()
        with self._lock:
            if ref.row_id in self._queued:
                return True
            self._queued.add(ref.row_id)
        if self._waiting.put(ref.owner_id, (ref, spec)):
            return True
        with self._lock:
            self._queued.discard(ref.row_id)
        return False

    def _plan(self, item: tuple[RevisionRef, dict[str, Any] | None]) -> None:
        ref, spec = item
        try:
            self._hand_over_guarded(ref, spec)
        finally:
            with self._lock:
                self._queued.discard(ref.row_id)

    def _hand_over_guarded(
        self, ref: RevisionRef, spec: dict[str, Any] | None, again: bool = False
    ) -> bool:
        """:meth:`hand_over`, its failure logged: False."""
        try:
            self.hand_over(ref, spec, again)
        except Exception:
            log.exception("handing %s to DPP failed", ref.flow_id)
            return False
        return True

    def hand_over(
        self, ref: RevisionRef, spec: dict[str, Any] | None = None, again: bool = False
    ) -> None:
        """Plan ``ref`` (fetching its data package if the spec does not carry it), write
        its pipelines where DPP finds them, and record it all in one transaction; ``again``:
        a REGISTERED revision whose files were lost, written again and synced."""
        if self.ledger.end_if_superseded(ref):
            return  # planning it would be for nothing, and might wait on the network
        if spec is None:
            spec = self.ledger.spec_of(ref)
        handover = self._take(ref, spec, sync=again, settle=not again)
        if handover is None:
            return  # ended unchanged
        try:
            recorded = self.ledger.hand_over(ref, handover, again)
        except BaseException:
            if handover.undo is not None:
                handover.undo()
            raise
        if not recorded and handover.undo is not None:
            handover.undo()

    def _take(
        self,
        ref: RevisionRef,
        spec: dict[str, Any],
        sync: bool = False,
        resources: list[Any] | None = None,
        settle: bool = False,
    ) -> Handover | None:
        """Plan ``ref`` and write its files and pipelines (synced to the disk, if asked):
        what it comes to. With ``settle``, a scheduled revision whose sources did not
        change is ended instead (None: nothing to hand over)."""
        try:
            descriptor = self.planner.descriptor(spec)
            hooks = [self._hook_url(ref)]
            plan = self.planner.plan(spec, ref.revision, descriptor, hooks, resources)
            if settle and self.unchanged is not None and self.unchanged.settle(ref, plan):
                return None
            plan.write_attachments(sync)
        except PlanError as exc:
            return Handover(exc.state, errors=tuple(exc.messages))
        except OSError as exc:
            message = f"the pipeline's files could not be written: {exc.strerror}"
            return Handover(FAILED, errors=(message,))
        try:
            written = self.pipelines.write(ref.owner_id, ref.dataset, plan.pipelines, sync)
        except OSError as exc:
            return Handover(FAILED, errors=(f"the pipeline could not be written for DPP: {exc}",))
        if plan.main_id in written.newer:
            return Handover(FAILED, errors=(superseded(written.newer[plan.main_id]),))
        # DPP runs what its files say: older revisions still waiting never will.
        return Handover(
            REGISTERED,
            pipelines=plan.pipelines,
            shown_pipeline=self.reports.shown(plan.main, ref.owner_id, ref.dataset),
            supersedes=True,
            undo=lambda: self.pipelines.take_back(written),
        )

    # -- the sweep ------------------------------------------------------------------------------

    def sweep(self) -> None:
        now = self.ledger.clock()
        left = now - dt.timedelta(seconds=LEFT_AFTER)
        for ref in self.ledger.orphaned((LOADED,), left, newest_only=True):
            # Planned in turn with the uploads (it may fetch); no room: the next sweep's.
            if self._sweeper.stopping.is_set() or not self._enqueue(ref, None):
                break
        if not self._lost_looked_for:
            self._lost_looked_for = self._hand_over_lost()
        silent = now - dt.timedelta(seconds=self.silence_timeout)
        # Without a dashboard to reconcile with, only the silence timeout acts: what has
        # not been silent that long is not read (there may be thousands waiting).
        quiet = (
            now - dt.timedelta(seconds=self.reconcile_after)
            if self.dashboard is not None
            else silent
        )
        for ref, modified in self.ledger.orphaned_since((REGISTERED, RUNNING), quiet):
            if self._sweeper.stopping.is_set():
                return
            if self.reconcile(ref) or modified >= silent:
                continue
            log.warning("%s: no event from DPP for %g s", ref.flow_id, self.silence_timeout)
            self.ledger.end(
                ref,
                FAILED,
                [
                    f"no event from DPP for {self.silence_timeout:g} s: the run is taken as lost "
                    "(DPP_SILENCE_TIMEOUT)"
                ],
            )

    def _hand_over_lost(self) -> bool:
        """Hand over again the revisions waiting for DPP since before the machine booted
        whose files are not on the disk: True when each of them was (False: to be looked
        for again at the next sweep)."""
        handed_over = True
        for ref in self.ledger.orphaned((REGISTERED,), self.booted, newest_only=True):
            if self._sweeper.stopping.is_set():
                return False
            if not self._on_disk(ref):
                log.warning(
                    "%s: its pipeline file or plan is not on the disk as its upload left them "
                    "(lost in a crash of the machine): handed to DPP again",
                    ref.flow_id,
                )
                handed_over = self._hand_over_guarded(ref, None, again=True) and handed_over
        return handed_over

    def _on_disk(self, ref: RevisionRef) -> bool:
        """Whether what DPP needs to run ``ref`` is where its handover wrote it: its
        pipelines in the dataset's file (or a newer revision's, whose upload supersedes it)
        and its plan's files whole."""
        try:
            there = self.pipelines.revision(ref.owner_id, ref.dataset)
        except (OSError, ValueError):
            return False  # taken again, it ends with the reason
        if there is not None and there > ref.revision:
            return True
        return there == ref.revision and self.planner.attachments_whole(
            ref.owner_id, ref.dataset, ref.revision
        )

    def reconcile(self, ref: RevisionRef) -> bool:
        """Bring ``ref`` to what DPP's dashboard recorded of its run: True when DPP has
        ended it (and so it is ended here too). A run DPP says is going, which specstore
        still had waiting, is RUNNING from now (once: a run that DPP says goes on for
        ever ends by the silence timeout all the same)."""
        if self.dashboard is None:
            return False
        pipeline_id = f"{ref.owner_id}/{ref.dataset}"
        record = self.dashboard.record(pipeline_id, ref.revision)
        state = (record or {}).get("state")
        if state in (SUCCEEDED, FAILED):
            log.info("%s: %s on DPP, by its dashboard", ref.flow_id, state)
            lines = str(record.get("reason") or "").splitlines()[-MAX_RECONCILED_LOG_LINES:]
            if lines:
                emit(self.ledger, self.reports, ref, pipeline_id, event="progress", log=lines)
            emit(
                self.ledger,
                self.reports,
                ref,
                pipeline_id,
                event="finish",
                success=state == SUCCEEDED,
                stats=record.get("stats") or {},
                errors=[str(line) for line in record.get("error_log") or []],
            )
            return True
        if state == RUNNING:
            emit(self.ledger, self.reports, ref, pipeline_id, event="start")
        return False
