"""Runs one planned pipeline with ``dataflows``, in a process of its own.

``python -m specstore.flowrunner`` reads the pipeline's definition and the
download limits (JSON) on standard input, fetches every source within those
limits into a temporary folder, and writes JSON lines on standard output: ``{"log": line}``
as it goes, then ``{"finish": {"success": ..., "stats": ..., "errors": ...}}``.
The embedded runner (:mod:`specstore.runner`) turns those into the same events
DPP's hooks send. A separate process means a crashing or runaway pipeline
cannot take the server with it, and can be killed at its time limit.

Each step is built the way DPP's standard processor of that name builds it
(``datapackage_pipelines/lib/<name>.py``), so a plan gives the same outputs
on both engines.
"""

from __future__ import annotations

import json
import logging
import posixpath
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from datapackage_pipelines_specstore import npm

from specstore.downloads import Downloader, DownloadError, UrlPolicy


def _load(parameters: dict[str, Any]) -> Any:
    from dataflows import load

    return load(parameters.pop("from"), **parameters)


def _update_package(parameters: dict[str, Any]) -> Any:
    from dataflows import update_package

    return update_package(**parameters)


def _update_resource(parameters: dict[str, Any]) -> Any:
    from dataflows import update_resource

    return update_resource(parameters.get("resources"), **parameters.get("metadata", {}))


def _dump_to_path(parameters: dict[str, Any]) -> Any:
    from dataflows import dump_to_path

    return dump_to_path(parameters.pop("out-path", "."), **parameters)


def _dump_to_zip(parameters: dict[str, Any]) -> Any:
    from dataflows import dump_to_zip

    return dump_to_zip(parameters.pop("out-file"), **parameters)


def _dump_to_sql(parameters: dict[str, Any]) -> Any:
    from dataflows import dump_to_sql

    return dump_to_sql(parameters["tables"], engine=parameters["engine"])


def _npm_publish(parameters: dict[str, Any]) -> Any:
    # The very steps DPP's processor runs (datapackage_pipelines_specstore).
    from dataflows import Flow

    return Flow(*npm.steps(parameters))


PROCESSORS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "load": _load,
    "update_package": _update_package,
    "update_resource": _update_resource,
    "dump_to_path": _dump_to_path,
    "dump_to_zip": _dump_to_zip,
    "dump_to_sql": _dump_to_sql,
    npm.PROCESSOR: _npm_publish,
}


class _JsonLines(logging.Handler):
    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        write(self.out, {"log": self.format(record)})


def write(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, default=str) + "\n")
    out.flush()


def fetch_sources(pipeline: dict[str, Any], downloader: Downloader, folder: Path) -> dict[str, Any]:
    """``pipeline`` with every ``load`` reading a local copy, fetched within the limits.

    The copy keeps the URL's file name, so the format is recognised as it would be
    from the URL.
    """
    steps = []
    for index, step in enumerate(pipeline["pipeline"]):
        if step["run"] == "load":
            parameters = dict(step["parameters"])
            url = parameters["from"]
            name = posixpath.basename(urlsplit(url).path) or "data"
            local = folder / str(index) / name
            local.parent.mkdir()
            size = downloader.to_file(url, local)
            logging.getLogger("download").info("%s: %d bytes", url, size)
            parameters["from"] = str(local)
            step = {**step, "parameters": parameters}
        steps.append(step)
    return {**pipeline, "pipeline": steps}


def run(pipeline: dict[str, Any], out: TextIO) -> bool:
    """Run ``pipeline``'s steps as one flow; report on ``out``. True when it succeeded."""
    from dataflows import Flow

    steps = []
    for step in pipeline["pipeline"]:
        processor = PROCESSORS.get(step["run"])
        if processor is None:
            write(
                out,
                {"finish": {"success": False, "errors": [f"unknown processor {step['run']!r}"]}},
            )
            return False
        steps.append(processor(dict(step.get("parameters") or {})))
    names = ", ".join(step["run"] for step in pipeline["pipeline"])
    write(out, {"log": f"running {len(steps)} steps: {names}"})
    try:
        _, stats = Flow(*steps).process()
    except Exception as exc:
        write(out, {"finish": {"success": False, "errors": _describe(exc)}})
        return False
    write(out, {"log": f"done: {stats.get('count_of_rows')} rows"})
    write(out, {"finish": {"success": True, "stats": stats}})
    return True


def _describe(exc: BaseException) -> list[str]:
    """The reason first, in one line, then the traceback, as DPP's error log has it.

    dataflows wraps a step's exception in a ``ProcessorError`` per flow it runs in;
    the reason is the step's own message, not the wrapping.
    """
    from dataflows.base.exceptions import ProcessorError

    root = exc
    while isinstance(root, ProcessorError) and isinstance(root.cause, BaseException):
        root = root.cause
    reason = " ".join(str(root).split()) or root.__class__.__name__
    cause = root.__cause__ or root.__context__
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__ or cause.__context__
    lines = [reason]
    if cause is not None and str(cause) not in reason:
        lines.append("caused by: " + " ".join(str(cause).split()))
    lines += "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return lines


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the JSON lines
    root = logging.getLogger()
    root.handlers[:] = [_JsonLines(out)]
    root.setLevel(logging.INFO)
    job = json.load(sys.stdin)
    limits = job.get("downloads") or {}
    downloader = Downloader(
        UrlPolicy(limits.get("allow") or ()),
        timeout=float(limits.get("timeout", 60)),
        max_bytes=int(limits.get("max_bytes", 100 * 1024 * 1024)),
    )
    with tempfile.TemporaryDirectory(prefix="specstore-run-") as folder:
        try:
            pipeline = fetch_sources(job["pipeline"], downloader, Path(folder))
        except DownloadError as exc:
            write(out, {"finish": {"success": False, "errors": [f"load: {exc}"]}})
            return 1
        return 0 if run(pipeline, out) else 1


if __name__ == "__main__":
    sys.exit(main())
