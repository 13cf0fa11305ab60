"""What DPP 2.2.11's server mode needs to run on Python 3.11, and as specstore runs it.

``make dpp`` installs ``datapackage_pipelines_specstore_compat.pth`` in DPP's virtualenv,
which imports this module in every process that virtualenv starts (beat, the workers,
the dashboard, each processor). So it stays light: what it changes, it changes when
the module concerned is first imported.

* celery 4.4.7 imports vine 1.3.0, which uses ``inspect.formatargspec``, removed in
  Python 3.11: restored here from ``inspect.signature``, the way the standard library
  formatted it.
* DPP connects to its Redis status store with no password (``DPP_REDIS_HOST`` is a host
  name alone): with ``DPP_REDIS_PASSWORD`` set, every Redis client made without one
  (DPP's status store and dependency manager) is given it. The queue's broker URL
  (``DPP_CELERY_BROKER``) carries it for celery.
* DPP logs the hook URLs it fails to call, hook credentials and all: every log line of
  a DPP process has the values of secret query parameters (``token=``) replaced.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import logging
import os
import sys
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


def _give_redis_clients(password: str) -> None:
    """Clients of the ``redis`` package made without a password (nor a connection pool,
    which has its own) get ``password``, from when the package is first imported."""

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "redis":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                execute(module)
                _default_password(module.Redis, password)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder())


def _default_password(client: Any, password: str) -> None:
    original = client.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # host, port, db come first; a fourth positional argument is a password.
        if len(args) < 4 and "connection_pool" not in kwargs and not kwargs.get("password"):
            kwargs["password"] = password
        original(self, *args, **kwargs)

    client.__init__ = __init__


def _redacting_log_records() -> None:
    """Every log record's message with the values of secret query parameters replaced."""
    from .redaction import redact_query

    make = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make(*args, **kwargs)
        try:
            message = made.getMessage()
        except Exception:  # a bad format is logging's to report, as it would
            return made
        if "token=" in message or "jwt=" in message:
            made.msg, made.args = redact_query(message), None
        return made

    logging.setLogRecordFactory(record)


if os.environ.get("DPP_REDIS_PASSWORD"):
    _give_redis_clients(os.environ["DPP_REDIS_PASSWORD"])
_redacting_log_records()
