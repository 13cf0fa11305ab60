"""specstore's DPP processors: ``specstore.<name>`` runs ``catalogue.STEPS[name]`` (or the npm
output) in DPP's processor protocol.

A step that fails for a reason a user can act on (:class:`StepError`, :class:`NpmError`)
logs that reason as one error line and exits 1, without a traceback: DPP's error log
of the run is then that line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from datapackage_pipelines_specstore import npm
from datapackage_pipelines_specstore.catalogue import STEPS
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
    from dataflows import Flow
    from datapackage_pipelines.utilities.flow_utils import spew_flow
    from datapackage_pipelines.wrapper import ingest

    try:
        with ingest() as ctx:
            spew_flow(Flow(*_steps(name, ctx.parameters)), ctx)
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
