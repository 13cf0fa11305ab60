"""A dataset's pipeline file as DPP reads it, written whole or not at all.

The file is ``{"pipelines": {"<owner>/<dataset>": {<pipeline>}, ...}}``, written as JSON,
which DPP's YAML parser reads as YAML; unless PyYAML would read the JSON differently
(:func:`reads_as`): then it is written as YAML, by PyYAML.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..disk import sync_directory, write_file

# libyaml's parser and emitter when PyYAML was built with it (the wheels are).
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Beside each file, the file a new version is written to before it is renamed over it
# (DPP reads no name starting with a dot).
TEMPORARY_FILE = ".specstore.tmp"


def document(pipelines: dict[str, dict[str, Any]]) -> bytes:
    """A dataset's file: JSON, unless PyYAML would read it differently: then YAML."""
    content = {"pipelines": pipelines}
    try:
        data = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # a value orjson refuses: an integer past 64 bits
        data = json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")
    if _yaml_risk(content, data) and not reads_as(data, content):
        return yaml.dump(
            content, Dumper=YamlDumper, sort_keys=True, allow_unicode=True, encoding="utf-8"
        )
    return data


def pipelines_in(data: bytes) -> dict[str, Any]:
    """The pipelines of a dataset's file (none, for an empty or unreadable one)."""
    if not data.strip():
        return {}
    try:
        read = json.loads(data)
    except ValueError:
        try:
            read = load_yaml(data.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            return {}
    pipelines = read.get("pipelines") if isinstance(read, dict) else None
    return pipelines if isinstance(pipelines, dict) else {}


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (a SafeLoader, C or Python)


# What JSON may hold that PyYAML would read differently or refuse: characters outside
# YAML's printable set and the two it reads as line breaks (U+2028, U+2029: JSON writes
# them as they are, and YAML folds the spaces around them), numbers in exponent form
# (YAML 1.1 wants a dot and a sign), numbers JSON has no form for (orjson writes them as
# null: the spec's validation refuses them, but a file must never say what its pipelines
# do not), and keys too long to be YAML simple keys. The characters are looked for in the
# text (in ASCII text a plain substring search), the rest in the values.
_UNPRINTABLE = re.compile(
    r"[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
LONG_KEY = 1000
# A float as repr writes it, and JSON too, when it is neither in exponent form nor infinite.
_PLAIN_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+")


def _yaml_risk(content: Any, data: bytes) -> bool:
    """True when the JSON ``data`` written for ``content`` may hold something PyYAML
    reads differently."""
    return _unprintable(data) or _risky_values(content)


def _unprintable(data: bytes) -> bool:
    """True when ``data`` (JSON) holds characters YAML may not, or reads as line breaks.
    In ASCII only DEL can be one: JSON escapes the controls below space."""
    if data.isascii():
        return b"\x7f" in data
    return _UNPRINTABLE.search(data.decode("utf-8")) is not None


def _risky_values(content: Any) -> bool:
    """True when ``content`` holds a float written with an exponent (or none at all: an
    infinity, NaN) or a key of ``LONG_KEY`` characters or more. A walk without recursion."""
    waiting = [content]
    while waiting:
        value = waiting.pop()
        if isinstance(value, dict):
            if max(map(len, value), default=0) >= LONG_KEY:
                return True
            waiting.extend(value.values())
        elif isinstance(value, list):
            waiting.extend(value)
        elif isinstance(value, float) and not _PLAIN_FLOAT.fullmatch(repr(value)):
            return True
    return False


def reads_as(data: bytes, content: Any) -> bool:
    """True when PyYAML reads the JSON ``data`` as ``content``."""
    try:
        return load_yaml(data.decode("utf-8")) == content
    except yaml.YAMLError:
        return False


def replace(path: Path, data: bytes, sync: bool) -> None:
    """Write ``path`` whole or not at all: a temporary file (synced to the disk first, if
    asked) renamed over it. The caller holds the dataset's lock, so the temporary file's
    name is fixed (one left by a crash is written over)."""
    temporary = path.parent / TEMPORARY_FILE
    try:
        write_file(temporary, data, sync)
        os.replace(temporary, path)
        if sync:
            sync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
