"""What DPP 2.2.11's server mode needs to run on Python 3.11.

celery 4.4.7 imports vine 1.3.0, which uses ``inspect.formatargspec``, removed in Python
3.11: restored here from ``inspect.signature``, the way the standard library formatted it.
``make dpp`` installs ``datapackage_pipelines_specstore_compat.pth`` in DPP's virtualenv,
which imports this module in every process that virtualenv starts (beat, the workers).
"""

from __future__ import annotations

import inspect
from typing import Any


def formatargspec(
    args: list[str],
    varargs: str | None = None,
    varkw: str | None = None,
    defaults: tuple[Any, ...] | None = None,
    kwonlyargs: list[str] | None = None,
    kwonlydefaults: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    **_: Any,
) -> str:
    parts = []
    first_default = len(args) - len(defaults or ())
    for index, name in enumerate(args):
        text = name
        if defaults and index >= first_default:
            text += "=" + repr(defaults[index - first_default])
        parts.append(text)
    if varargs:
        parts.append("*" + varargs)
    elif kwonlyargs:
        parts.append("*")
    for name in kwonlyargs or []:
        text = name
        if kwonlydefaults and name in kwonlydefaults:
            text += "=" + repr(kwonlydefaults[name])
        parts.append(text)
    if varkw:
        parts.append("**" + varkw)
    return "(" + ", ".join(parts) + ")"


if not hasattr(inspect, "formatargspec"):
    inspect.formatargspec = formatargspec  # type: ignore[attr-defined]
