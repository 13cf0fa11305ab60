"""A dataset's pipeline file as DPP reads it, written whole or not at all.

The file is ``{"pipelines": {"<owner>/<dataset>": {<pipeline>}, ...}}``, written as JSON,
which DPP's YAML parser reads as YAML; unless PyYAML would read the JSON differently
(:func:`reads_the_same`): then it is written as YAML, by PyYAML.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

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
    text = json.dumps({"pipelines": pipelines}, ensure_ascii=False, sort_keys=True)
    if not reads_the_same(text):
        text = yaml.dump(
            {"pipelines": pipelines}, Dumper=YamlDumper, sort_keys=True, allow_unicode=True
        )
    return text.encode("utf-8")


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
# (YAML 1.1 wants a dot), JSON's Infinity/NaN, and keys too long to be YAML simple keys.
# Each is looked for on its own (see ``_yaml_risk``), most with a plain substring search:
# one alternation for them all would try every branch at every character. Writing every
# file with PyYAML instead is the plain form, and the slow one (``bench/layers.py``: "the
# dataset's pipeline file written").
_UNPRINTABLE = re.compile(
    r"[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# A number in exponent form, as json.dumps writes one: after ``[``, ``: `` or ``, `` (a
# digit before an ``e`` inside a string, as in a token, is not one).
_EXPONENT = re.compile(r"[\[:,] ?-?[0-9]+(?:\.[0-9]+)?[eE]")
LONG_KEY = 1000
_LONG_KEY = re.compile(r'"(?:[^"\\]|\\.){' + str(LONG_KEY) + r',}"\s*:')


def _yaml_risk(text: str) -> bool:
    """True when the JSON ``text`` may hold something PyYAML reads differently."""
    return bool(
        _unprintable(text)
        or _EXPONENT.search(text)
        or "Infinity" in text
        or "NaN" in text
        or (_may_hold_a_long_key(text) and _LONG_KEY.search(text))
    )


def _unprintable(text: str) -> bool:
    """True when ``text`` (written by ``json.dumps``) holds characters YAML may not, or
    reads as line breaks. In ASCII text only DEL can be one: JSON escapes the controls
    below space."""
    if text.isascii():
        return "\x7f" in text
    return _UNPRINTABLE.search(text) is not None


def _may_hold_a_long_key(text: str) -> bool:
    """False when no string in ``text`` can be ``LONG_KEY`` characters long: without an
    escaped quote, a string is what lies between two quotes."""
    return '\\"' in text or max(map(len, text.split('"'))) >= LONG_KEY


def reads_the_same(text: str) -> bool:
    """True when PyYAML reads the JSON ``text`` as json does."""
    if not _yaml_risk(text):
        return True
    try:
        return load_yaml(text) == json.loads(text)
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
