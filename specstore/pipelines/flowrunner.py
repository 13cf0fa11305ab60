"""Runs one planned pipeline with ``dataflows``, in a process of its own.

``python -m specstore.pipelines.flowrunner --parent PID`` reads the pipeline's
definition (JSON) on standard input and writes JSON lines on standard output:
``{"log": line}`` as it goes, then ``{"finish": {"success": ..., "stats": ...,
"errors": ...}}``. The embedded runner (:mod:`specstore.pipelines.runner`) turns
those into the same events DPP's hooks send. A separate process means a crashing or
runaway pipeline cannot take the server with it, and can be killed at its time limit;
it asks the kernel to kill it when the server process that started it dies, so it
never outlives it.

DPP's standard steps are built the way DPP's processor of that name builds them
(``datapackage_pipelines/lib/<name>.py``); specstore's own (``specstore.*``) are the
very steps DPP runs through ``datapackage_pipelines_specstore``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from typing import Any, TextIO

from datapackage_pipelines_specstore import catalogue, npm, steps
from datapackage_pipelines_specstore.lifetime import die_with_parent


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


def run(pipeline: dict[str, Any], out: TextIO) -> bool:
    """Run ``pipeline``'s steps as one flow; report on ``out``. True when it succeeded."""
    from dataflows import Flow

    flow_steps = []
    for step in pipeline["pipeline"]:
        processor = catalogue.PROCESSORS.get(step["run"])
        if processor is None:
            write(
                out,
                {"finish": {"success": False, "errors": [f"unknown processor {step['run']!r}"]}},
            )
            return False
        try:
            flow_steps.append(processor(dict(step.get("parameters") or {})))
        except Exception as exc:
            write(out, {"finish": {"success": False, "errors": describe(exc)}})
            return False
    names = ", ".join(step["run"] for step in pipeline["pipeline"])
    write(out, {"log": f"running {len(flow_steps)} steps: {names}"})
    try:
        _, stats = Flow(*flow_steps).process()
    except Exception as exc:
        write(out, {"finish": {"success": False, "errors": describe(exc)}})
        return False
    write(out, {"log": f"done: {stats.get('count_of_rows')} rows"})
    write(out, {"finish": {"success": True, "stats": stats}})
    return True


def describe(exc: BaseException) -> list[str]:
    """What went wrong, in a line or two: the reason a step gave, else the root cause and
    what caused it. The traceback goes to standard error, for the server's log only.

    dataflows wraps a step's exception in a ``ProcessorError`` per flow it runs in;
    the reason is the step's own message, not the wrapping.
    """
    from dataflows.base.exceptions import ProcessorError

    traceback.print_exception(exc, file=sys.stderr)
    root = exc
    while isinstance(root, ProcessorError) and isinstance(root.cause, BaseException):
        root = root.cause
    reason = " ".join(str(root).split()) or root.__class__.__name__
    if isinstance(root, steps.StepError):
        return [reason, *root.details]
    if isinstance(root, npm.NpmError):
        return [reason]
    lines = [
        f"{root.__class__.__name__}: {reason}" if reason != root.__class__.__name__ else reason
    ]
    cause = root.__cause__ or root.__context__
    while cause is not None and not str(cause).strip():
        cause = cause.__cause__ or cause.__context__
    if cause is not None and str(cause) not in reason:
        lines.append("caused by: " + " ".join(str(cause).split()))
    return lines


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(prog="python -m specstore.pipelines.flowrunner")
    arguments.add_argument("--parent", type=int, help="die when this process dies")
    options = arguments.parse_args(argv)
    if options.parent:
        die_with_parent(options.parent)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the JSON lines
    root = logging.getLogger()
    root.handlers[:] = [_JsonLines(out)]
    root.setLevel(logging.INFO)
    job = json.load(sys.stdin)
    return 0 if run(job["pipeline"], out) else 1


if __name__ == "__main__":
    sys.exit(main())
