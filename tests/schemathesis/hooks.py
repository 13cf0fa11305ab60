"""schemathesis hooks for specstore's run (``tests/test_schemathesis.py``).

Positive upload cases are schema-valid specs; what the schema cannot know is this
server's own configuration and the uploader's identity, which the spec must match to
be accepted (``README.md``, "The spec"). Before a positive upload is sent, its spec is
fitted to them: its owner is the token's user, an ``rdbms`` output names the connection
the server has, at most one ``npm`` output naming the credentials it has, zip files
with names of their own, and no inline data package (whose planning the schema does
not describe). Negative cases go as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

OWNER = "alice"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.operation.path != "/source/upload" or not isinstance(case.body, dict):
        return
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    spec = case.body
    if isinstance(spec.get("meta"), dict):
        spec["meta"]["ownerid"] = OWNER
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
