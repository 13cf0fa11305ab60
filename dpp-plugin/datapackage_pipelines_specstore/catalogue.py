"""Every step a plan may hold, by the name it runs under: specstore's own
(``specstore.<name>``) and the few of DPP's standard processors a plan uses, each as the
``dataflows`` step it is. What both engines build a plan's steps from: the embedded runner
(``specstore.pipelines.flowrunner``) and DPP (``specstore.flow``, which runs a whole plan in
one processor; ``processors/``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import npm, publication, steps

STEPS: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "stage": steps.stage,
    "load": steps.load,
    "dump_to_sql": steps.dump_to_sql,
    "derive": publication.derive,
    "package": steps.package,
    "publication": publication.publication,
    "publish": publication.publish,
}


def _update_package(parameters: dict[str, Any]) -> Any:
    from dataflows import update_package

    return update_package(**parameters)


def _update_resource(parameters: dict[str, Any]) -> Any:
    from dataflows import update_resource

    return update_resource(parameters.get("resources"), **parameters.get("metadata", {}))


def _dump_to_path(parameters: dict[str, Any]) -> Any:
    """dataflows' ``dump_to_path``, writing by :mod:`.formats`' faster CSV and JSON formats."""
    from dataflows import dump_to_path

    from .formats import CsvRows, JsonRows

    formatters = {"csv": CsvRows, "json": JsonRows}
    return dump_to_path(parameters.pop("out-path", "."), file_formatters=formatters, **parameters)


def _specstore(build: Callable[[dict[str, Any]], list[Any]]) -> Callable[[dict[str, Any]], Any]:
    def step(parameters: dict[str, Any]) -> Any:
        from dataflows import Flow

        return Flow(*build(parameters))

    return step


PROCESSORS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "update_package": _update_package,
    "update_resource": _update_resource,
    "dump_to_path": _dump_to_path,
    **{f"specstore.{name}": _specstore(build) for name, build in STEPS.items()},
    npm.PROCESSOR: _specstore(npm.steps),
}
