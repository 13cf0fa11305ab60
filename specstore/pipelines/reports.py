"""What the engines report, made fit to show to whoever may read a dataset.

Both engines report a failure as the lines a Python process wrote: DPP sends the
failed processor's name and its standard error, tracebacks included; the embedded
runner the reason and its causes. Users see what went wrong, not how specstore is
built or where it keeps its files:

* traceback frames (``Traceback ...``, ``File "...", line N``, the source lines and
  markers under them) are dropped, the exception lines kept;
* the log prefix of DPP's processors (``ERROR   :Main    :``) is dropped;
* absolute paths under the output folder are written relative to the dataset's own
  folder, and other server paths (the data folder, the DPP folder, temporary folders)
  by a placeholder.

A pipeline's definition as ``info`` shows it, and an event's statistics, are cleaned
the same way in every string (keys too), and the values of secret query parameters
(the hook token in the hook URLs) are replaced by ``***``.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datapackage_pipelines_specstore.redaction import redact_query

from ..events import PipelineEvent
from ..store.ledger import Ledger
from ..store.records import RevisionRef

MAX_LINE_LENGTH = 2000
_TRACEBACK = re.compile(
    r"^(Traceback \(most recent call last\):"
    r"|During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:)\s*$"
)
_FRAME = re.compile(r'^\s+File "[^"]*", line \d+')
_MARKERS = re.compile(r"^\s*[\^~]+\s*$")
# A log line's level and, in DPP's format, its padded logger name.
_LEVEL = re.compile(r"^(?:CRITICAL|ERROR|WARNING|INFO|DEBUG)\s*:(?:\w[\w.]*\s{2,}:)?")
# What a traceback's last lines look like: ``ValueError: reason``, ``AssertionError``.
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:: .*)?$", re.DOTALL)
# ``<processor>: `` in front of DPP's log lines.
_PROCESSOR = re.compile(r"^(?P<name>[A-Za-z_][\w.]*): (?P<line>.*)$", re.DOTALL)
_BARE_PROCESSOR = re.compile(r"^[A-Za-z_][\w.]*$")
TEMPORARY_ROOT = tempfile.gettempdir() + "/"
_TEMPORARY = re.compile(re.escape(TEMPORARY_ROOT) + r"[^\s'\"),]+")


class Reports:
    def __init__(
        self,
        output_root: str | Path,
        other_roots: Iterable[str | Path] = (),
        data_root: str | Path | None = None,
    ) -> None:
        self.output_root = str(Path(output_root).resolve())
        self.other_roots = [str(Path(root).resolve()) for root in other_roots if root]
        self.data_root = str(Path(data_root).resolve()) if data_root else None

    def _paths(self, text: str, owner_id: str, dataset: str) -> str:
        if "/" not in text:
            return text  # no path: most of a pipeline's strings
        dataset_dir = f"{self.output_root}/{owner_id}/{dataset}"
        text = text.replace(dataset_dir + "/", "").replace(dataset_dir, ".")
        text = text.replace(self.output_root, "<output>")
        if self.data_root:
            text = text.replace(self.data_root, "<data>")
        for root in self.other_roots:
            text = text.replace(root, "<pipelines>")
        return _TEMPORARY.sub("<tmp>", text) if TEMPORARY_ROOT in text else text

    def lines(self, lines: Iterable[str], owner_id: str, dataset: str) -> list[str]:
        """Log or error lines without traceback frames, log prefixes or server paths."""
        kept: list[str] = []
        after_frame = False
        for raw in lines:
            line = str(raw)
            prefix = ""
            found = _PROCESSOR.match(line)
            if found and _looks_like_report(found["line"]):
                prefix, line = found["name"] + ": ", found["line"]
            line = _LEVEL.sub("", line).rstrip()
            if _TRACEBACK.match(line.strip()) or _MARKERS.match(line):
                after_frame = False
                continue
            if _FRAME.match(line) or _FRAME.match("  " + line):
                after_frame = True
                continue
            if after_frame and not _EXCEPTION.match(line.strip()):
                after_frame = False
                continue  # the source line under a frame (DPP's log strips its indent)
            after_frame = False
            line = line.strip()
            if not line:
                continue
            text = self._paths(prefix + line, owner_id, dataset)[:MAX_LINE_LENGTH]
            if not kept or kept[-1] != text:
                kept.append(text)
        return kept

    def errors(self, lines: list[str], owner_id: str, dataset: str) -> list[str]:
        """A failure's error lines: ``lines`` cleaned, and DPP's leading processor name
        made the prefix of the reason (specstore's own processors name what failed
        themselves, so their name is left out)."""
        lines = [str(line) for line in lines]
        processor = None
        if len(lines) > 1 and _BARE_PROCESSOR.match(lines[0]):
            processor, lines = lines[0], lines[1:]
        cleaned = self.lines(lines, owner_id, dataset)
        if processor and cleaned and not processor.startswith("specstore."):
            cleaned[0] = f"{processor}: {cleaned[0]}"
        return cleaned

    def event(self, event: PipelineEvent) -> PipelineEvent:
        """``event`` with its log and error lines cleaned, and the paths in its statistics
        (DPP reports where it wrote the data package) made relative."""
        owner_id, dataset = event.pipeline.owner_id, event.pipeline.dataset
        return dataclasses.replace(
            event,
            log=self.lines(event.log, owner_id, dataset),
            errors=self.errors(event.errors, owner_id, dataset),
            stats=self.value(event.stats, owner_id, dataset),
        )

    def value(self, value: Any, owner_id: str, dataset: str) -> Any:
        """A pipeline definition (or any JSON value) fit to show: in each of its strings,
        keys included, paths made relative and secret query values replaced. A string
        with no ``/`` holds no path, and one with no ``=`` no query parameter: most keys
        and words are kept as they are without a look."""

        def clean(text: str) -> str:
            if "/" in text:
                text = self._paths(text, owner_id, dataset)
            return redact_query(text) if "=" in text else text

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return clean(value)
            if isinstance(value, dict):
                return {clean(key): walk(item) for key, item in value.items()}
            if isinstance(value, list):
                return [walk(item) for item in value]
            return value

        return walk(value)

    def shown(self, pipeline: Any, owner_id: str, dataset: str) -> Any:
        """A pipeline definition as users are shown it (see :meth:`value`): made once,
        when a revision is handed over, and stored."""
        return self.value(pipeline, owner_id, dataset)


def _looks_like_report(line: str) -> bool:
    """Whether what follows ``<name>: `` is a processor's report line (so the name is
    DPP's prefix) rather than, say, ``ValueError: ...`` itself."""
    return bool(
        _TRACEBACK.match(line.strip())
        or _FRAME.match(line)
        or _LEVEL.match(line)
        or line.startswith("    ")
    )


def emit(
    ledger: Ledger,
    reports: Reports,
    ref: RevisionRef,
    pipeline_id: str,
    plan: dict[str, Any] | None = None,
    **payload: Any,
) -> None:
    """Record an engine event exactly as if DPP's hook had posted it (with, when a
    revision is handed over, its plan and its main pipeline as shown, in the same
    transaction)."""
    body = {"pipeline_id": f"./{pipeline_id}", **payload}
    event = reports.event(PipelineEvent.from_payload(body, ref.revision))
    shown = reports.shown(plan[pipeline_id], ref.owner_id, ref.dataset) if plan else None
    ledger.apply_event(event, plan, shown)
