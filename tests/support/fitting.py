"""A spec generated from the JSON Schema, fitted to the server it is sent to.

What the schema cannot know is the server's own configuration and the uploader's
identity, which a spec must match to be accepted (README.md, "The spec"); the
generators of valid specs (hypothesis in tests/support/strategies.py, schemathesis's hooks in
tests/schemathesis/hooks.py) fit what they made to a test server configured with:

* the uploader ``alice``;
* one relational connection, ``warehouse``, and npm credentials ``public`` (a spec has
  one npm output at most);
* the schedule window ``SCHEDULE_WINDOW``: the server's SCHEDULE_MIN_INTERVAL (the
  default) to ten years, and no limit on how many datasets have one;
* every address allowed (the schema admits a URL whatever address its host is);
* npm package names within npm's 214 characters: with an npm output, a dataset name
  of at most ``NPM_DATASET_MAX`` characters (its package is ``@hub/alice-<dataset>``,
  where a character npm does not take is written as three);

and zip outputs get files of their own, inline data packages (whose planning the
schema does not describe; tests/unit/pipelines/test_planner.py has its rules) are dropped.

Standard library only: schemathesis's virtualenv imports it too.
"""

from __future__ import annotations

import math
import re
from typing import Any

OWNER = "alice"
ENGINE = "warehouse"
NPM_CREDENTIALS = "public"
SCHEDULE_WINDOW = (600, 520 * 7 * 86400)
NPM_SCOPE = "hub"
NPM_DATASET_MAX = (214 - len(f"@{NPM_SCOPE}/{OWNER}-")) // 3
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def fitted_schedule(schedule: str) -> str:
    """``schedule`` in its own unit, moved into SCHEDULE_WINDOW if it is outside."""
    found = re.fullmatch(r"every ([0-9]+)([mhdw])", schedule)
    if found is None:
        return schedule
    count, size = int(found[1]), _UNIT_SECONDS[found[2]]
    shortest, longest = SCHEDULE_WINDOW
    count = min(max(count, math.ceil(shortest / size)), longest // size)
    return f"every {count}{found[2]}"


def fit_spec(spec: Any) -> None:
    """Fit ``spec`` (a dict from the schema, changed in place) to the test server."""
    if not isinstance(spec, dict):
        return
    if isinstance(spec.get("meta"), dict):
        spec["meta"]["ownerid"] = OWNER
    if isinstance(spec.get("schedule"), str):
        spec["schedule"] = fitted_schedule(spec["schedule"])
    for source in spec.get("inputs") or []:
        parameters = source.get("parameters") if isinstance(source, dict) else None
        if isinstance(parameters, dict):
            parameters.pop("descriptor", None)
            parameters.pop("resource_info", None)
    if not isinstance(spec.get("outputs"), list):
        return
    outputs, npm, zips = [], False, 0
    meta = spec.get("meta")
    for output in spec["outputs"]:
        kind = output.get("kind")
        parameters = output.setdefault("parameters", {}) if kind != "sqlite" else None
        if kind == "rdbms":
            parameters["engine"] = ENGINE
        elif kind == "npm":
            if npm:
                continue
            npm = True
            if "credentials" in parameters:
                parameters["credentials"] = NPM_CREDENTIALS
            if isinstance(meta, dict) and isinstance(meta.get("dataset"), str):
                meta["dataset"] = meta["dataset"][:NPM_DATASET_MAX]
        elif kind == "zip":
            zips += 1
            parameters["out-file"] = f"output-{zips}.zip"
        outputs.append(output)
    spec["outputs"] = outputs
