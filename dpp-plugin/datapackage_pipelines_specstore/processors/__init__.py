"""specstore's DPP processors: ``specstore.flow`` runs a whole plan (its ``steps``) as one
``dataflows`` flow, as the embedded runner does; ``specstore.<name>`` runs one step,
``catalogue.STEPS[name]`` (or the npm output), for the plans DPP was given one step per
processor (see ``datapackage_pipelines_specstore.generator``).

A step that fails for a reason a user can act on (:class:`StepError`, :class:`NpmError`)
logs that reason as one error line and exits 1, without a traceback: DPP's error log
of the run is then that line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from datapackage_pipelines_specstore import npm
from datapackage_pipelines_specstore.catalogue import PROCESSORS, STEPS
from datapackage_pipelines_specstore.steps import StepError


def _steps(name: str, parameters: dict[str, Any]) -> list[Any]:
    if name == npm.PROCESSOR.split(".", 1)[1]:
        return npm.steps(parameters)
    return STEPS[name](parameters)


def _expected(exc: BaseException) -> BaseException | None:
    """The StepError or NpmError behind ``exc`` (dataflows wraps what a step raises)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, StepError | npm.NpmError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
        seen += 1
    return None


def run(name: str) -> None:
    """One step, ``specstore.<name>``, as one processor (the pipelines of older releases,
    which DPP may still be running)."""
    _spew(lambda parameters: _steps(name, parameters))


def run_plan() -> None:
    """``specstore.flow``: the plan's ``steps`` as one flow, built in order in this one
    process (its rows cross no process boundary), and no rows left for DPP to stream on:
    the flow's last step published every output, and its statistics are the run's."""
    _spew(lambda parameters: [*_plan(parameters["steps"]), _drain])


def _plan(plan: list[dict[str, Any]]) -> list[Any]:
    built = []
    for step in plan:
        processor = PROCESSORS.get(step.get("run"))
        if processor is None:
            raise StepError(f"unknown processor {step.get('run')!r}")
        built.append(processor(dict(step.get("parameters") or {})))
    return built


def _drain(rows: Any) -> Any:
    """Each resource's rows read to the end (every output is written by then), none
    handed on: DPP has nothing left to stream."""
    for _ in rows:
        pass
    yield from ()


def _spew(build: Any) -> None:
    from dataflows import Flow
    from datapackage_pipelines.utilities.flow_utils import spew_flow
    from datapackage_pipelines.wrapper import ingest

    try:
        with ingest() as ctx:
            spew_flow(Flow(*build(ctx.parameters)), ctx)
            # Every resource of specstore's pipelines streams its rows through DPP.
            for resource in ctx.datapackage.get("resources") or []:
                resource.setdefault("dpp:streaming", True)
    except Exception as exc:
        expected = _expected(exc)
        if expected is None:
            raise
        for line in [str(expected), *getattr(expected, "details", [])]:
            logging.error("%s", line)
        sys.exit(1)
