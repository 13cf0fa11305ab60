"""datapackage-pipelines (DPP): handing revisions over by writing pipelines where
DPP finds them, reading its dashboard's record of a pipeline, and never leaving a
revision waiting for a word from DPP that does not come.

DPP has no API to submit pipelines: it walks its working folder for files that
define them. Each dataset's pipelines are a file of their own,
``<DPP_PIPELINES_DIR>/<ownerid>/<dataset>/specstore.source-spec.yaml``, which DPP
hands to specstore's plugin (``datapackage_pipelines_specstore.Generator``) and runs
under the ids ``./<ownerid>/<dataset>``. A write replaces that file whole: a
temporary file renamed over it, under a lock beside it, so DPP never reads half a file
and a newer revision's pipelines are never replaced by an older one's; it costs the
same however many datasets the owner has.

An upload does not wait for its files to reach the disk: the database, which does, is
the record. What a crash of the machine can lose of them (the file, or the rename, or
the plan's metadata file) the first sweep after the machine boots again finds missing
from a revision still REGISTERED, and writes again, synced (see :class:`DppDispatcher`).

Older specstores kept all of an owner's pipelines in ``<ownerid>/pipeline-spec.yaml``
(one top-level key per dataset, DPP's own format). The first write for such an owner
moves them all into their datasets' files and removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cachetools import TTLCache
from datapackage_pipelines_specstore.generator import FILE_NAME
from datapackage_pipelines_specstore.steps import child

from ..events import FAILED, LOADED, REGISTERED, RUNNING, SUCCEEDED
from ..http_client import HttpClient, PeerUnavailable
from ..registry import Handover, Registry, RevisionRef
from .disk import sync_directory, write_file
from .fairness import FairQueue
from .planner import REVISION_KEY, PlanError, Planner, given_descriptor
from .reports import Reports, emit

log = logging.getLogger(__name__)

# libyaml's parser and emitter when PyYAML was built with it (the wheels are).
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# A dataset's pipelines, read by specstore's plugin in DPP.
DATASET_FILE = FILE_NAME
# An owner's pipelines, as older specstores wrote them: DPP's own format.
SPEC_FILE = "pipeline-spec.yaml"
# Beside each file, the lock its writers take and the file a new version is written to
# before it is renamed over it (DPP reads none of these names).
LOCK_FILE = ".specstore.lock"
TEMPORARY_FILE = ".specstore.tmp"
LEGACY_LOCK_FILE = ".pipeline-spec.lock"
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
        ``<dataset>:<suffix>``): those of the owner's old file, then its datasets'."""
        try:
            found = parse(self._legacy_file(owner_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            found = {}
        for path in sorted(self.owner_dir(owner_id).glob(f"*/{DATASET_FILE}")):
            pipelines = _pipelines_in(path.read_bytes())
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
        held before, for :meth:`take_back`. An owner's file as older specstores wrote it is
        first moved into its datasets'.
        """
        if self._legacy_file(owner_id).exists():
            self._move_legacy(owner_id)
        written = Written(owner_id, dataset, _revision_of(pipelines))
        with self._dataset_file(owner_id, dataset) as path:
            written.previous = _contents(path)
            there = _revision_in(written.previous)
            if there is not None and there > written.revision:
                written.newer = dict.fromkeys(pipelines, there)
                return written
            _replace(path, _document(pipelines), sync)
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
                _replace(path, written.previous, sync=False)

    @contextlib.contextmanager
    def _dataset_file(self, owner_id: str, dataset: str) -> Iterator[Path]:
        """The dataset's file, its folder made and its lock held for the block."""
        directory = self.dataset_dir(owner_id, dataset)
        directory.mkdir(parents=True, exist_ok=True)
        with _locked(directory / LOCK_FILE):
            yield directory / DATASET_FILE

    def _legacy_file(self, owner_id: str) -> Path:
        """Where an older specstore kept the owner's pipelines (its folder named as is)."""
        return child(self.root, owner_id) / SPEC_FILE

    def _move_legacy(self, owner_id: str) -> None:
        """Move the owner's old file's pipelines into their datasets' files (where a
        dataset's own file is not of a newer revision), then remove it: once per owner."""
        legacy = self._legacy_file(owner_id)
        with _locked(legacy.parent / LEGACY_LOCK_FILE):
            try:
                pipelines = parse(legacy.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return  # moved meanwhile, by another process
            datasets: dict[str, dict[str, Any]] = {}
            for key, details in pipelines.items():
                dataset = str(key).split(":", 1)[0]
                datasets.setdefault(dataset, {})[f"{owner_id}/{key}"] = details
            for dataset, moved in datasets.items():
                with self._dataset_file(owner_id, dataset) as path:
                    there = _revision_in(_contents(path))
                    if there is None or there < _revision_of(moved):
                        # Synced: the old file, removed next, is all that holds them.
                        _replace(path, _document(moved), sync=True)
            legacy.unlink()
        log.info("%s: the owner's %s moved into its datasets' files", owner_id, SPEC_FILE)


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
    return None if data is None else _revision_of(_pipelines_in(data))


def _pipelines_in(data: bytes) -> dict[str, Any]:
    """The pipelines of a dataset's file (none, for an empty or unreadable one)."""
    if not data.strip():
        return {}
    try:
        document = json.loads(data)
    except ValueError:
        try:
            document = load_yaml(data.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            return {}
    pipelines = document.get("pipelines") if isinstance(document, dict) else None
    return pipelines if isinstance(pipelines, dict) else {}


def _document(pipelines: dict[str, dict[str, Any]]) -> bytes:
    """A dataset's file: JSON, which DPP's YAML parser reads as YAML, unless PyYAML would
    read it differently (see ``_reads_the_same``): then YAML, written by PyYAML."""
    document = {"pipelines": pipelines}
    text = json.dumps(document, ensure_ascii=False, sort_keys=True)
    if not _reads_the_same(text):
        text = yaml.dump(document, Dumper=YamlDumper, sort_keys=True, allow_unicode=True)
    return text.encode("utf-8")


# How the JSON form of an older specstore's owner file starts.
JSON_MARK = "{\n"


def parse(text: str) -> dict[str, Any]:
    """The pipelines of a pipeline-spec.yaml's text (older specstores wrote JSON, one
    pipeline per line, when it read the same through YAML)."""
    if text.startswith(JSON_MARK):
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return load_yaml(text) or {}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader, C or Python)


# What JSON may hold that PyYAML would read differently or refuse: characters outside
# YAML's printable set and the two it reads as line breaks (U+2028, U+2029: JSON writes
# them as they are, and YAML folds the spaces around them), numbers in exponent form
# (YAML 1.1 wants a dot), JSON's Infinity/NaN, and keys too long to be YAML simple keys.
# Each is looked for on its own (see ``_yaml_risk``): one pattern for them all costs three
# times as much.
_UNPRINTABLE = re.compile(
    r"[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_EXPONENT = re.compile(r"[0-9][eE]")
LONG_KEY = 1000
_LONG_KEY = re.compile(r'"(?:[^"\\]|\\.){' + str(LONG_KEY) + r',}"\s*:')


def _yaml_risk(text: str) -> bool:
    """True when the JSON ``text`` may hold something PyYAML reads differently."""
    return bool(
        _unprintable(text)
        or _EXPONENT.search(text)
        or "Infinity" in text
        or "NaN" in text
        or (_may_hold_a_long_key(text) and _LONG_KEY.search(text))
    )


def _unprintable(text: str) -> bool:
    """True when ``text`` (written by ``json.dumps``) holds characters YAML may not, or
    reads as line breaks. In ASCII text only DEL can be one: JSON escapes the controls
    below space."""
    if text.isascii():
        return "\x7f" in text
    return _UNPRINTABLE.search(text) is not None


def _may_hold_a_long_key(text: str) -> bool:
    """False when no string in ``text`` can be ``LONG_KEY`` characters long: without an
    escaped quote, a string is what lies between two quotes."""
    return '\\"' in text or max(map(len, text.split('"'))) >= LONG_KEY


def _reads_the_same(text: str) -> bool:
    """True when PyYAML reads the JSON ``text`` as json does."""
    if not _yaml_risk(text):
        return True
    try:
        return load_yaml(text) == json.loads(text)
    except yaml.YAMLError:
        return False


def _replace(path: Path, data: bytes, sync: bool) -> None:
    """Write ``path`` whole or not at all: a temporary file (synced to the disk first, if
    asked) renamed over it. The caller holds the dataset's lock, so the temporary file's
    name is fixed (one left by a crash is written over)."""
    temporary = path.parent / TEMPORARY_FILE
    try:
        write_file(temporary, data, sync)
        os.replace(temporary, path)
        if sync:
            sync_directory(path.parent)
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
    "dirty",
    "cache_hash",
    "queued",
    "started",
    "ended",
    "last_success",
    "pipeline",
)


class DppDashboard:
    """DPP's dashboard, asked with a short timeout, and never a wait for every request:

    * an answer (a record, or DPP's 404 for a pipeline it has not registered yet) is kept
      for ``ttl`` seconds, so that front ends polling one dataset's ``info`` share one ask;
    * a record the dashboard failed to answer (hanging past the timeout, an error status)
      is not asked for again for ``retry_after`` seconds: meanwhile ``info`` of that
      dataset answers from specstore's own records at once. One dataset's slow record
      costs the others nothing;
    * once the dashboard does not answer at all (nothing takes the connection), or fails
      ``FAILURES_TO_PAUSE`` records in a row, it is not asked for any for ``retry_after``
      seconds, instead of each request holding a worker for the whole timeout.
    """

    FAILURES_TO_PAUSE = 3

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        ttl: float = 2.0,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self.base_url = base_url
        self._clock = clock
        self._retry_after = retry_after
        self._answers: TTLCache[str, Any] = TTLCache(maxsize=4096, ttl=ttl, timer=clock)
        self._failed: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=retry_after, timer=clock)
        self._failures = 0
        self._lock = threading.Lock()
        self._quiet_until = 0.0

    def record(self, pipeline_id: str, revision: int) -> dict[str, Any] | None:
        """DPP's record of the pipeline if it is of ``revision``; None when there is none,
        or the dashboard is not answering."""
        record = self._raw(pipeline_id)
        if not isinstance(record, dict):
            return None
        pipeline = record.get("pipeline") or {}
        if not isinstance(pipeline, dict) or pipeline.get(REVISION_KEY) != revision:
            return None
        found = {key: record[key] for key in DASHBOARD_FIELDS if key in record}
        # specstore's trigger (upload, scheduled) stays; DPP's says why DPP ran it.
        if "trigger" in record:
            found["dpp_trigger"] = record["trigger"]
        if "state" in found:
            found["state"] = DPP_STATES.get(found["state"], found["state"])
        return found

    def _raw(self, pipeline_id: str) -> Any:
        """The dashboard's answer for the pipeline (None: no record), as kept or asked now."""
        with self._lock:
            if pipeline_id in self._answers:
                return self._answers[pipeline_id]
            if self._clock() < self._quiet_until or pipeline_id in self._failed:
                return None
        try:
            answer = self._http.get(f"{self.base_url}api/raw/{pipeline_id}").json()
        except PeerUnavailable as exc:
            if exc.status != 404:
                self._note_failure(pipeline_id, exc)
                return None
            answer = None
        except ValueError:
            answer = None
        with self._lock:
            self._answers[pipeline_id] = answer
            self._failures = 0
        return answer

    def _note_failure(self, pipeline_id: str, exc: PeerUnavailable) -> None:
        with self._lock:
            self._failed[pipeline_id] = True
            self._failures += 1
            pause = not exc.reached or self._failures >= self.FAILURES_TO_PAUSE
            if pause:
                self._quiet_until = self._clock() + self._retry_after
        # Not the URL: DPP_URL may carry the dashboard's basic auth.
        if not exc.reached:
            what = "does not answer"
        else:
            what = f"answered {exc.status}" if exc.status else "did not answer in time"
        which = "any record" if pause else f"{pipeline_id}'s record"
        log.warning("DPP's dashboard %s: %s not asked for for %g s", what, which, self._retry_after)


class DppDispatcher:
    """Hands revisions to a datapackage-pipelines deployment by writing its pipeline files.

    A spec that carries its data package is planned and handed over during the upload
    (no network involved); one that does not is planned in the background, where its
    data package is fetched, by ``planners`` threads with at most ``backlog`` revisions
    waiting for them: past that, a revision stays LOADED in the database for the sweeper,
    so that a flood of such uploads holds no more memory than that. They wait fairly
    across owners (:class:`FairQueue`): the owners served in turn, at most
    ``per_owner`` of one owner's planned at once. A sweeper, in every server process:

    * hands over what a stopped server stored, or this one had no room to plan, but
      never handed over (LOADED);
    * hands over again, its files synced, a revision waiting for DPP (REGISTERED) whose
      pipeline file or plan is not on the disk as its upload left them: an upload does
      not wait for them to reach it, so a crash of the machine can lose them, and DPP
      would never run it. Only what was handed over before the machine last booted
      (``booted``) can have been lost that way: the process's first sweep looks at those,
      once (they may be many, should DPP be down);
    * reconciles: a revision DPP has sent no event about for ``reconcile_after`` is
      looked up on DPP's dashboard (its record of the pipeline, if it is of this
      revision) and brought to the state DPP recorded, so a hook that never arrived
      (specstore restarting, say: DPP never retries one) leaves nothing waiting;
    * ends FAILED, with the reason, a revision neither DPP's hooks nor its dashboard
      have said anything about for ``silence_timeout``.
    """

    def __init__(
        self,
        registry: Registry,
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
    ) -> None:
        self.registry = registry
        self.planner = planner
        self.reports = reports
        self.pipelines = pipelines
        self.dashboard = dashboard
        self.silence_timeout = silence_timeout
        self.reconcile_after = min(reconcile_after, silence_timeout)
        self.sweep_seconds = sweep_seconds or min(30.0, self.reconcile_after / 2)
        self._hook_url = hook_url
        self.planners = planners
        self._waiting: FairQueue[tuple[RevisionRef, dict[str, Any] | None]] = FairQueue(
            per_owner=per_owner, capacity=planners + backlog
        )
        self._planner_threads: list[threading.Thread] = []
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()
        self.booted = machine_booted()
        self._lost_looked_for = False

    def prepare(self, ref: RevisionRef, spec: dict[str, Any]) -> Handover | None:
        """Inside the upload's transaction: a spec that carries its data package is
        planned and its pipelines written where DPP finds them (no network involved);
        one that does not is left LOADED, to be planned in the background (None)."""
        if given_descriptor(spec) is None:
            return None
        return self._take(ref, spec)

    def dispatch(
        self, ref: RevisionRef, spec: dict[str, Any] | None = None, handover: Handover | None = None
    ) -> None:
        """Hand ``ref`` over, unless its upload did (``handover``): now when its spec (if
        the caller has it at hand) carries its data package, else in the background."""
        if handover is not None:
            return
        if spec is not None and given_descriptor(spec) is not None:
            self.hand_over(ref, spec)
            return
        self._start_planners()
        with self._lock:
            if ref.row_id in self._queued:
                return  # waiting already (the sweeper finds it LOADED meanwhile)
            self._queued.add(ref.row_id)
        if not self._waiting.put(ref.owner_id, (ref, spec)):
            with self._lock:
                self._queued.discard(ref.row_id)
            log.info("%s: the planners are busy; it waits LOADED for the sweeper", ref.flow_id)

    def _start_planners(self) -> None:
        if self._planner_threads:
            return
        with self._lock:
            if self._planner_threads or self._stopping.is_set():
                return
            self._planner_threads = [
                threading.Thread(target=self._plan, name=f"specstore-plan-{number}", daemon=True)
                for number in range(self.planners)
            ]
            for thread in self._planner_threads:
                thread.start()

    def _plan(self) -> None:
        """A planner: the next revision fairly due, planned and handed over."""
        while not self._stopping.is_set():
            taken = self._waiting.take()
            if taken is None:
                return
            owner, (ref, spec) = taken
            try:
                self._hand_over_guarded(ref, spec)
            finally:
                with self._lock:
                    self._queued.discard(ref.row_id)
                self._waiting.done(owner)

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
        newer = self.registry.superseded_by(ref)
        if newer is not None:
            # Planning it would be for nothing, and might wait on the network.
            self.registry.end(ref, FAILED, [f"superseded by revision {newer} before it ran"])
            return
        if spec is None:
            spec = self.registry.spec_of(ref)
        handover = self._take(ref, spec, sync=again)
        try:
            recorded = self.registry.hand_over(ref, handover, again)
        except BaseException:
            if handover.undo is not None:
                handover.undo()
            raise
        if not recorded and handover.undo is not None:
            handover.undo()

    def _take(self, ref: RevisionRef, spec: dict[str, Any], sync: bool = False) -> Handover:
        """Plan ``ref`` and write its files and pipelines (synced to the disk, if asked):
        what it comes to."""
        try:
            descriptor = self.planner.descriptor(spec)
            hooks = [self._hook_url(ref)]
            plan = self.planner.plan(spec, ref.revision, descriptor, hooks=hooks)
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
            message = f"superseded by revision {written.newer[plan.main_id]} before it ran"
            return Handover(FAILED, errors=(message,))
        # DPP runs what its files say: older revisions still waiting never will.
        return Handover(
            REGISTERED,
            pipelines=plan.pipelines,
            supersedes=True,
            undo=lambda: self.pipelines.take_back(written),
        )

    def start(self) -> None:
        """Start the sweeper (once per process)."""
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(
            target=self._sweep_forever, name="specstore-dpp-sweeper", daemon=True
        ).start()

    def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("the sweep of revisions handed to DPP failed")
            self._stopping.wait(self.sweep_seconds)

    def sweep(self) -> None:
        now = self.registry.clock()
        left = now - dt.timedelta(seconds=LEFT_AFTER)
        for ref in self.registry.orphaned((LOADED,), left, newest_only=True):
            if self._stopping.is_set():
                return
            # Planned in turn with the uploads (it may fetch): the planners' room first.
            self.dispatch(ref)
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
        for ref, modified in self.registry.orphaned_since((REGISTERED, RUNNING), quiet):
            if self._stopping.is_set():
                return
            if self.reconcile(ref) or modified >= silent:
                continue
            log.warning("%s: no event from DPP for %g s", ref.flow_id, self.silence_timeout)
            self.registry.end(
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
        for ref in self.registry.orphaned((REGISTERED,), self.booted, newest_only=True):
            if self._stopping.is_set():
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
                emit(self.registry, self.reports, ref, pipeline_id, event="progress", log=lines)
            emit(
                self.registry,
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
            emit(self.registry, self.reports, ref, pipeline_id, event="start")
        return False

    def stop(self) -> None:
        self._stopping.set()
        self._waiting.close()
