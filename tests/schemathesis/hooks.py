"""schemathesis hooks for specstore's run (``tests/test_schemathesis.py``).

Positive upload cases are schema-valid specs; what the schema cannot know is this
server's own configuration and the uploader's identity, which the spec must match to
be accepted (``README.md``, "The spec"). Before a positive upload is sent, its spec is
fitted to them: its owner is the token's user, an ``rdbms`` output names the connection
the server has, at most one ``npm`` output naming the credentials it has, zip files
with names of their own, a schedule between the server's SCHEDULE_MIN_INTERVAL and ten
years, and no inline data package (whose planning the schema does not describe).
Negative cases go as generated.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

OWNER = "alice"
# The shortest and longest schedules the server takes, in seconds, as
# tests/test_schemathesis.py starts it (SCHEDULE_MIN_INTERVAL; ten years).
SCHEDULE_WINDOW = tuple(map(float, os.environ["SPECSTORE_SCHEDULE_WINDOW"].split(":")))
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _fitted_schedule(schedule: str) -> str:
    """``schedule`` in its own unit, moved into the server's window if it is outside."""
    found = re.fullmatch(r"every ([0-9]+)([mhdw])", schedule)
    if found is None:
        return schedule
    count, size = int(found[1]), UNIT_SECONDS[found[2]]
    shortest, longest = SCHEDULE_WINDOW
    count = min(max(count, math.ceil(shortest / size)), int(longest // size))
    return f"every {count}{found[2]}"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.operation.path != "/source/upload" or not isinstance(case.body, dict):
        return
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    spec = case.body
    if isinstance(spec.get("meta"), dict):
        spec["meta"]["ownerid"] = OWNER
    if isinstance(spec.get("schedule"), str):
        spec["schedule"] = _fitted_schedule(spec["schedule"])
    for source in spec.get("inputs") or []:
        parameters = source.get("parameters") if isinstance(source, dict) else None
        if isinstance(parameters, dict):
            parameters.pop("descriptor", None)
            parameters.pop("resource_info", None)
    outputs, npm, zips = [], False, 0
    for output in spec.get("outputs") or []:
        kind = output.get("kind")
        parameters = output.setdefault("parameters", {}) if kind != "sqlite" else None
        if kind == "rdbms":
            parameters["engine"] = "warehouse"
        elif kind == "npm":
            if npm:
                continue
            npm = True
            if "credentials" in parameters:
                parameters["credentials"] = "public"
        elif kind == "zip":
            zips += 1
            parameters["out-file"] = f"output-{zips}.zip"
        outputs.append(output)
    if "outputs" in spec:
        spec["outputs"] = outputs
