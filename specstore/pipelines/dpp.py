"""datapackage-pipelines (DPP): handing revisions over by writing pipelines where
DPP finds them, reading its dashboard's record of a pipeline, and never leaving a
revision waiting for a word from DPP that does not come.

DPP has no API to submit pipelines: it walks its working folder, and every
top-level key of a ``pipeline-spec.yaml`` is a pipeline whose id is
``./<folder>/<key>``. So an owner's datasets are the keys of
``<DPP_PIPELINES_DIR>/<ownerid>/pipeline-spec.yaml``. Writing one dataset's
pipelines is a read-modify-write of that shared file, done under an exclusive
lock on a lock file beside it and finished by an atomic rename, so concurrent
uploads of one owner's datasets never lose each other's pipelines and DPP
never reads half a file.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any

import yaml
from cachetools import TTLCache

from ..events import FAILED, LOADED, REGISTERED, RUNNING, SUCCEEDED
from ..http_client import HttpClient, PeerUnavailable
from ..registry import Handover, Registry, RevisionRef
from .planner import REVISION_KEY, PlanError, Planner, given_descriptor
from .reports import Reports, emit

log = logging.getLogger(__name__)

# libyaml's parser and emitter when PyYAML was built with it (the wheels are).
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

SPEC_FILE = "pipeline-spec.yaml"
# How much of DPP's log a revision brought up to date by reconciliation keeps.
MAX_RECONCILED_LOG_LINES = 100
LOCK_FILE = ".pipeline-spec.lock"  # DPP skips dot files


class DppPipelines:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def owner_dir(self, owner_id: str) -> Path:
        path = (self.root / owner_id).resolve()
        if path.parent != self.root:
            raise ValueError(f"{owner_id!r} is not a folder name")
        return path

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[_SpecFile]:
        directory.mkdir(parents=True, exist_ok=True)
        lock = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield _SpecFile(directory / SPEC_FILE, lock)
        finally:
            os.close(lock)  # which lets go of the lock too

    def read(self, owner_id: str) -> dict[str, Any]:
        path = self.owner_dir(owner_id) / SPEC_FILE
        try:
            return parse(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def write(self, owner_id: str, pipelines: dict[str, dict[str, Any]]) -> Written:
        """Put ``pipelines`` (ids ``<ownerid>/<key>``) into the owner's spec file.

        A pipeline already there from a newer revision is left as it is; the answer
        names those, with the newer revision's number, and keeps what the file held
        before, for :meth:`take_back`. In the usual case (the file exactly as specstore
        last wrote it, see :class:`_SpecFile`) the other pipelines are carried over as
        bytes, never parsed, and the pipeline's line is found by bisection on the sorted
        keys: a write costs a copy of the file, however many datasets the owner has.
        """
        with self._locked(self.owner_dir(owner_id)) as file:
            written = Written(owner_id)
            lines = file.trusted_lines()
            if lines is not None and _put_lines(lines, pipelines, written):
                if written.previous:
                    file.replace(JSON_MARK_BYTES + b",\n".join(lines) + b"\n}\n")
                return written
            written = Written(owner_id)
            parsed, unchecked = file.lines()
            for pipeline_id, details in pipelines.items():
                key = pipeline_id.split("/", 1)[1]
                there = _revision(parsed[key]) if key in parsed else 0
                if there > details.get(REVISION_KEY, 0):
                    written.newer[pipeline_id] = there
                    continue
                written.previous[key] = parsed.get(key)
                written.revision = details.get(REVISION_KEY, 0)
                parsed[key] = _line(key, details)
                unchecked.add(key)
            if written.previous:
                file.replace(_text(parsed, unchecked).encode("utf-8"))
            return written

    def take_back(self, written: Written) -> None:
        """Put back what :meth:`write` replaced, where the file still holds what it wrote
        (a write whose revision was never stored must not be run)."""
        with self._locked(self.owner_dir(written.owner_id)) as file:
            lines, unchecked = file.lines()
            for key, line in written.previous.items():
                if key not in lines or _revision(lines[key]) != written.revision:
                    continue
                if line is None:
                    del lines[key]
                    unchecked.discard(key)
                else:
                    lines[key] = line
            file.replace(_text(lines, unchecked).encode("utf-8"))


class _SpecFile:
    """An owner's ``pipeline-spec.yaml``, its lock held.

    Whoever writes the file (under the lock) records in the lock file the file's
    identity as it left it: inode, size, and times of change. A file that still has that
    identity is exactly what specstore wrote, one checked pipeline per line, sorted by
    key, and is edited as bytes (:meth:`trusted_lines`); any other (edited by hand, say,
    or written by an older specstore) is read and checked whole (:meth:`lines`).
    """

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self._lock = lock

    def trusted_lines(self) -> list[bytes] | None:
        """The file's pipeline lines (no separators), when it is as specstore left it."""
        recorded = os.pread(self._lock, _IDENTITY_SIZE, 0)
        if not recorded.strip():
            return None
        try:
            with open(self.path, "rb") as handle:
                if _identity(os.fstat(handle.fileno())) != recorded:
                    return None
                data = handle.read()
        except FileNotFoundError:
            return None
        if not (data.startswith(JSON_MARK_BYTES) and data.endswith(b"\n}\n")):
            return None
        # Lines hold no raw newline (json escapes them); all but the last end in a comma.
        lines = data[len(JSON_MARK_BYTES) : -len(b"\n}\n")].split(b"\n")
        return [line[:-1] for line in lines[:-1]] + lines[-1:]

    def lines(self) -> tuple[dict[str, str], set[str]]:
        """The pipelines in the file as JSON lines by key, and the keys whose lines are
        not yet known to read the same through YAML."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        lines = _json_lines(text)
        if lines is None:
            # YAML (written by PyYAML, by hand, or by an older specstore): parse it whole.
            lines = {key: _line(key, value) for key, value in parse(text).items()}
        # Each line is checked before the file is written as JSON again.
        return lines, set(lines)

    def replace(self, data: bytes) -> None:
        """Write the file whole (see ``_replace``) and record what it is now: the one-line
        JSON form only; a YAML file is read whole next time."""
        os.pwrite(self._lock, b" " * _IDENTITY_SIZE, 0)  # untrusted until it is written
        _replace(self.path, data)
        if data.startswith(JSON_MARK_BYTES):
            os.pwrite(self._lock, _identity(os.stat(self.path)), 0)


# The identity is written over the start of the lock file, in place, always this long.
_IDENTITY_SIZE = 96


def _identity(stat: os.stat_result) -> bytes:
    identity = f"{stat.st_ino} {stat.st_size} {stat.st_mtime_ns} {stat.st_ctime_ns}"
    return identity.encode().ljust(_IDENTITY_SIZE)


def _line_key(line: bytes) -> str:
    """The key of one pipeline line, ``"key": {...}``."""
    return scanstring(line.decode("utf-8"), 1)[0]


def _put_lines(lines: list[bytes], pipelines: dict[str, dict[str, Any]], written: Written) -> bool:
    """Put ``pipelines`` into ``lines`` (sorted by key) as :meth:`DppPipelines.write`
    does; False, with ``lines`` not to be used, when a new line would read differently
    through YAML (the whole file must then be written by PyYAML)."""
    for pipeline_id, details in pipelines.items():
        key = pipeline_id.split("/", 1)[1]
        index = bisect.bisect_left(lines, key, key=_line_key)
        found = index < len(lines) and _line_key(lines[index]) == key
        previous = lines[index].decode("utf-8") if found else None
        there = _revision(previous) if previous is not None else 0
        if there > details.get(REVISION_KEY, 0):
            written.newer[pipeline_id] = there
            continue
        line = _line(key, details)
        if not _reads_the_same(line):
            return False
        written.previous[key] = previous
        written.revision = details.get(REVISION_KEY, 0)
        if found:
            lines[index] = line.encode("utf-8")
        else:
            lines.insert(index, line.encode("utf-8"))
    return True


@dataclass
class Written:
    """What one :meth:`DppPipelines.write` did: the pipelines it left alone because the
    file had them from a newer revision (``newer``, id -> that revision), and the lines it
    replaced (``previous``, key -> line, None where there was none)."""

    owner_id: str
    newer: dict[str, int] = field(default_factory=dict)
    previous: dict[str, str | None] = field(default_factory=dict)
    revision: int = 0


def parse(text: str) -> dict[str, Any]:
    """The pipelines of a pipeline-spec.yaml's text."""
    if text.startswith(JSON_MARK):
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return load_yaml(text) or {}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader, C or Python)


def render(pipelines: dict[str, Any]) -> str:
    """The text of a pipeline-spec.yaml holding ``pipelines``."""
    lines = {key: _line(key, value) for key, value in pipelines.items()}
    return _text(lines, set(lines))


def _text(lines: dict[str, str], unchecked: set[str]) -> str:
    """The file's text from its pipelines' JSON lines.

    DPP reads the file with PyYAML. Written as YAML by PyYAML, a file costs tens of
    milliseconds per hundred pipelines to write and as much again to read back,
    and an owner's file holds all of the owner's datasets. JSON is YAML too, and
    ``json`` is two orders of magnitude faster, so the file is JSON, one pipeline
    per line, whenever every pipeline reads back the same through YAML; that is
    certain for all but rare values (numbers in exponent form, infinities, a few
    control characters, keys over 1,000 characters), which ``_reads_the_same``
    checks by parsing them as YAML. ``unchecked`` names the lines not yet known
    to read the same. If any does not, the whole file is written by PyYAML.
    """
    if not all(_reads_the_same(lines[key]) for key in unchecked):
        pipelines = {key: _value(line) for key, line in lines.items()}
        return yaml.dump(pipelines, Dumper=YamlDumper, sort_keys=True, allow_unicode=True)
    if not lines:
        return "{}\n"
    return JSON_MARK + ",\n".join(lines[key] for key in sorted(lines)) + "\n}\n"


JSON_MARK = "{\n"
JSON_MARK_BYTES = JSON_MARK.encode()
# What JSON may hold that PyYAML would read differently or refuse: characters outside
# YAML's printable set, numbers in exponent form (YAML 1.1 wants a dot), JSON's
# Infinity/NaN, and keys too long to be YAML simple keys. Each is looked for on its own
# (see ``_yaml_risk``): one pattern for them all costs three times as much per line.
_UNPRINTABLE = re.compile(r"[^\x09\x0a\x0d\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_EXPONENT = re.compile(r"[0-9][eE]")
LONG_KEY = 1000
_LONG_KEY = re.compile(r'"(?:[^"\\]|\\.){' + str(LONG_KEY) + r',}"\s*:')


def _yaml_risk(line: str) -> bool:
    """True when the JSON ``line`` may hold something PyYAML reads differently."""
    return bool(
        _UNPRINTABLE.search(line)
        or _EXPONENT.search(line)
        or "Infinity" in line
        or "NaN" in line
        or (_may_hold_a_long_key(line) and _LONG_KEY.search(line))
    )


def _may_hold_a_long_key(line: str) -> bool:
    """False when no string in ``line`` can be ``LONG_KEY`` characters long: without an
    escaped quote, a string is what lies between two quotes."""
    return '\\"' in line or max(map(len, line.split('"'))) >= LONG_KEY


def _line(key: str, value: Any) -> str:
    """One pipeline as one line of JSON: ``"key": {...}`` (json escapes every newline)."""
    return json.dumps({key: value}, ensure_ascii=False, sort_keys=True)[1:-1]


def _value(line: str) -> Any:
    return next(iter(json.loads("{" + line + "}").values()))


def _revision(line: str) -> int:
    value = _value(line)
    return value.get(REVISION_KEY, 0) if isinstance(value, dict) else 0


def _json_lines(text: str) -> dict[str, str] | None:
    """The pipelines of a file in the JSON form ``_text`` writes, as ``{key: line}``, each
    line one whole ``"key": value`` pair on a line of its own; None for any other form."""
    if not (text.startswith(JSON_MARK) and text.endswith("\n}\n")):
        return None
    lines = {}
    for line in text[len(JSON_MARK) : -len("\n}\n")].split(",\n"):
        if not line.startswith('"') or "\n" in line:
            return None
        try:
            pair = json.loads("{" + line + "}")
        except ValueError:
            return None
        if len(pair) != 1 or next(iter(pair)) in lines:
            return None
        lines[next(iter(pair))] = line
    return lines


def _reads_the_same(line: str) -> bool:
    """True when PyYAML reads the JSON ``line`` (one ``"key": value`` pair) as json does."""
    if not _yaml_risk(line):
        return True
    try:
        return load_yaml("{" + line + "}") == json.loads("{" + line + "}")
    except yaml.YAMLError:
        return False


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, synced, renamed over it."""
    handle, temporary = tempfile.mkstemp(prefix=".pipeline-spec.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
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
    * once the dashboard has failed to answer (down, hanging past the timeout, an error
      status), it is not asked again for ``retry_after`` seconds: meanwhile ``info``
      answers from specstore's own records at once, instead of each request holding a
      worker for the whole timeout.
    """

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
            if self._clock() < self._quiet_until:
                return None
        try:
            answer = self._http.get(f"{self.base_url}api/raw/{pipeline_id}").json()
        except PeerUnavailable as exc:
            if exc.status != 404:
                with self._lock:
                    self._quiet_until = self._clock() + self._retry_after
                # Not the URL: DPP_URL may carry the dashboard's basic auth.
                what = f"answered {exc.status}" if exc.status else "did not answer in time"
                log.warning("DPP's dashboard %s: not asked for %g s", what, self._retry_after)
                return None
            answer = None
        except ValueError:
            answer = None
        with self._lock:
            self._answers[pipeline_id] = answer
        return answer


class DppDispatcher:
    """Hands revisions to a datapackage-pipelines deployment by writing its pipeline files.

    A spec that carries its data package is planned and handed over during the upload
    (no network involved); one that does not is planned in the background, where its
    data package is fetched, by ``planners`` threads with at most ``backlog`` revisions
    waiting for them: past that, a revision stays LOADED in the database for the sweeper,
    so that a flood of such uploads holds no more memory than that. A sweeper, in every
    server process:

    * hands over what a stopped server stored, or this one had no room to plan, but
      never handed over (LOADED);
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
        hook_url: Callable[[int], str],
        silence_timeout: float,
        reconcile_after: float = 120.0,
        dashboard: DppDashboard | None = None,
        planners: int = 2,
        backlog: int = 64,
        sweep_seconds: float | None = None,
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
        self._planners = ThreadPoolExecutor(planners, thread_name_prefix="specstore-plan")
        self._room = threading.BoundedSemaphore(planners + backlog)
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()

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
        elif self._room.acquire(blocking=False):
            self._planners.submit(self._plan_in_background, ref, spec)
        else:
            log.info("%s: the planners are busy; it waits LOADED for the sweeper", ref.flow_id)

    def _plan_in_background(self, ref: RevisionRef, spec: dict[str, Any] | None) -> None:
        try:
            self._hand_over_guarded(ref, spec)
        finally:
            self._room.release()

    def _hand_over_guarded(self, ref: RevisionRef, spec: dict[str, Any] | None) -> None:
        try:
            self.hand_over(ref, spec)
        except Exception:
            log.exception("handing %s to DPP failed", ref.flow_id)

    def hand_over(self, ref: RevisionRef, spec: dict[str, Any] | None = None) -> None:
        """Plan ``ref`` (fetching its data package if the spec does not carry it), write
        its pipelines where DPP finds them, and record it all in one transaction."""
        newer = self.registry.superseded_by(ref)
        if newer is not None:
            # Planning it would be for nothing, and might wait on the network.
            self.registry.end(ref, FAILED, [f"superseded by revision {newer} before it ran"])
            return
        if spec is None:
            spec = self.registry.spec_of(ref)
        handover = self._take(ref, spec)
        try:
            recorded = self.registry.hand_over(ref, handover)
        except BaseException:
            if handover.undo is not None:
                handover.undo()
            raise
        if not recorded and handover.undo is not None:
            handover.undo()

    def _take(self, ref: RevisionRef, spec: dict[str, Any]) -> Handover:
        """Plan ``ref`` and write its files and pipelines: what it comes to."""
        try:
            descriptor = self.planner.descriptor(spec)
            hooks = [self._hook_url(ref.revision)]
            plan = self.planner.plan(spec, ref.revision, descriptor, hooks=hooks)
            plan.write_attachments()
        except PlanError as exc:
            return Handover(exc.state, errors=tuple(exc.messages))
        except OSError as exc:
            message = f"the pipeline's files could not be written: {exc.strerror}"
            return Handover(FAILED, errors=(message,))
        try:
            written = self.pipelines.write(ref.owner_id, plan.pipelines)
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
        for ref in self.registry.orphaned(
            (LOADED,), now - dt.timedelta(seconds=30), newest_only=True
        ):
            if self._stopping.is_set():
                return
            self._hand_over_guarded(ref, None)
        quiet = now - dt.timedelta(seconds=self.reconcile_after)
        silent = now - dt.timedelta(seconds=self.silence_timeout)
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
        self._planners.shutdown(wait=False, cancel_futures=True)
