"""schemathesis hooks for specstore's run (``tests/system/test_schemathesis.py``).

Positive upload cases are schema-valid specs; before one is sent, it is fitted to the
server's configuration and the uploader's identity (``tests/support/fitting.py``), as
hypothesis's valid specs are in ``tests/support/strategies.py``. Negative cases go as
generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

from tests.support.fitting import fit_spec


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.operation.path != "/source/upload" or not isinstance(case.body, dict):
        return
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    fit_spec(case.body)
