"""Every ``specstore.<name>`` step, by name: what DPP's processors (``processors/``) and
the embedded runner build each step of a plan from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import publication, steps

STEPS: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "stage": steps.stage,
    "load": steps.load,
    "dump_to_sql": steps.dump_to_sql,
    "derive": publication.derive,
    "package": steps.package,
    "publication": publication.publication,
    "publish": steps.publish,
}
