"""Reading request bodies and checking them against the published JSON Schemas.

The schemas live as files in ``specstore/schemas`` so that the validator, the
``GET /source/schema`` route and the ``specstore validate`` command all use the
very same document.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from functools import cache
from importlib import resources
from typing import Any, ClassVar

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from .errors import BadRequest, InvalidSpec, PayloadTooLarge

SPEC_SCHEMA = "source-spec.schema.json"
EVENT_SCHEMA = "pipeline-event.schema.json"
OPENAPI = "openapi.json"

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
DOCUMENT_TYPES = JSON_TYPES | YAML_TYPES

# Bounds on what a parsed document may hold. A YAML alias "bomb" is a small
# document whose aliases expand into billions of values: counting values as
# they are walked stops it long before it costs anything.
MAX_DEPTH = 64
MAX_VALUES = 100_000
# YAML costs far more to build than JSON (PyYAML resolves every scalar's type in
# Python: about 15 us a value even with libyaml's parser), so a YAML document is
# bounded before it is built: at most this many bytes and nodes, counted on libyaml's
# event stream. Large specs (a README inline) come as JSON, as the DataHub client sends.
MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_NODES = 20_000
_YamlBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (
    yaml.ScalarEvent,
    yaml.SequenceStartEvent,
    yaml.MappingStartEvent,
    yaml.AliasEvent,
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema document ``name`` from the package's schemas folder."""
    return json.loads(schema_text(name))


def schema_text(name: str) -> str:
    """The schema document ``name`` exactly as published."""
    return resources.files(__package__).joinpath("schemas", name).read_text("utf-8")


# The most digits a number may have: what no spec needs more of, and what costs nothing
# to read (Python turns a long string of digits into a number in quadratic time).
MAX_NUMBER_DIGITS = 100
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"


class _SpecYamlLoader(_YamlBase):  # type: ignore[misc,valid-type]
    """Safe YAML loading (libyaml's parser when PyYAML has it) that yields only JSON values,
    at a cost bounded by the document's size.

    Timestamps stay the strings they were written as; binary data and sets, which JSON
    cannot hold, are refused. YAML 1.1's base-60 numbers (``1:30``, read as 90, in
    quadratic time for long ones) are strings, as in YAML 1.2; numbers of more than
    ``MAX_NUMBER_DIGITS`` characters and merge keys (``<<``, which copy a mapping once
    per alias) are refused.
    """

    # YAML 1.1's implicit types, but numbers as YAML 1.2 writes them (no base 60).
    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, Any]]]] = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_INT, _FLOAT)]
        for first, resolvers in _YamlBase.yaml_implicit_resolvers.items()
    }

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        for key, _ in node.value:
            if key.tag == _MERGE:
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not taken: write the keys out", key.start_mark
                )
        super().flatten_mapping(node)


_SpecYamlLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_SpecYamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _bounded_number(construct: Any) -> Any:
    """``construct`` (PyYAML's int or float constructor) for a number that is neither in
    base 60 nor longer than ``MAX_NUMBER_DIGITS``: refused otherwise, even when tagged."""

    def bounded(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        text = loader.construct_scalar(node)
        if ":" in text or len(text) > MAX_NUMBER_DIGITS:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a number is at most {MAX_NUMBER_DIGITS} characters, in base 10, 16, 8 or 2",
                node.start_mark,
            )
        return construct(loader, node)

    return bounded


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return loader.construct_scalar(node)


def _refuse(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the YAML type {node.tag} is not allowed", node.start_mark
    )


_SpecYamlLoader.add_constructor(
    _INT, _bounded_number(yaml.constructor.SafeConstructor.construct_yaml_int)
)
_SpecYamlLoader.add_constructor(
    _FLOAT, _bounded_number(yaml.constructor.SafeConstructor.construct_yaml_float)
)
_SpecYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_SpecYamlLoader.add_constructor("tag:yaml.org,2002:binary", _refuse)
_SpecYamlLoader.add_constructor("tag:yaml.org,2002:set", _refuse)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number is at most {MAX_NUMBER_DIGITS} digits")
    return int(text)


def parse_document(data: bytes, media_type: str, replace_unstorable: bool = False) -> Any:
    """Parse a JSON or YAML request body into plain JSON values.

    Raises :class:`BadRequest` with a readable reason when the body cannot be
    parsed or holds something JSON cannot (non-string keys, NaN, too deep).
    Characters no database stores (NUL, lone surrogates) are refused, or, with
    ``replace_unstorable``, replaced by U+FFFD.
    """
    if not data.strip():
        raise BadRequest("the request body is empty")
    try:
        if media_type in YAML_TYPES:
            document = _load_yaml(data)
        else:
            document = json.loads(data, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except RecursionError:
        raise BadRequest(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        raise BadRequest(f"the body is not valid YAML: {_yaml_reason(exc)}") from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8 text") from None
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    _check_json_values(document, refuse_unstorable=not replace_unstorable)
    return storable(document) if replace_unstorable else document


def _load_yaml(data: bytes) -> Any:
    if len(data) > MAX_YAML_BYTES:
        raise PayloadTooLarge(
            f"a YAML body is at most {MAX_YAML_BYTES} bytes: send larger specs as JSON"
        )
    nodes = 0
    for event in yaml.parse(data, Loader=_YamlBase):
        if isinstance(event, _NODE_EVENTS):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise BadRequest(
                    f"a YAML document holds at most {MAX_YAML_NODES} values: send larger "
                    "specs as JSON"
                )
    return yaml.load(data, Loader=_SpecYamlLoader)  # noqa: S506 - a SafeLoader subclass


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong, where (line and column, counted from 1), without the
    name it gives a body it reads (``"<byte string>"``)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return _one_line(exc)
    mark = exc.problem_mark
    reason = (
        f"{exc.problem or 'it cannot be read'} at line {mark.line + 1}, column {mark.column + 1}"
    )
    if exc.context and exc.context_mark is not None:
        start = exc.context_mark
        reason += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
    return " ".join(reason.split())


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with NUL and lone surrogates in its strings replaced by U+FFFD: no
    database refuses what is left (PostgreSQL stores neither in text or JSON)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def _check_json_values(document: Any, refuse_unstorable: bool = True) -> None:
    """Walk ``document`` without recursion and refuse what JSON cannot hold. Containers
    wait on a stack; the values in each are checked in one pass over it."""
    if not isinstance(document, dict | list):
        _check_scalar(document, refuse_unstorable)
        return
    stack: list[tuple[dict[Any, Any] | list[Any], int]] = [(document, 0)]
    seen = 1
    while stack:
        container, depth = stack.pop()
        seen += len(container)
        if seen > MAX_VALUES:
            raise BadRequest(f"the document holds more than {MAX_VALUES} values")
        if depth >= MAX_DEPTH and container:
            raise BadRequest(f"the document is nested deeper than {MAX_DEPTH} levels")
        if isinstance(container, dict):
            for key in container:
                if not isinstance(key, str):
                    raise BadRequest(f"object keys must be strings, not {key!r}")
                if refuse_unstorable:
                    _check_storable(key)
            values: Any = container.values()
        else:
            values = container
        for value in values:
            if isinstance(value, str):
                if refuse_unstorable:
                    _check_storable(value)
            elif isinstance(value, dict | list):
                stack.append((value, depth + 1))
            else:
                _check_scalar(value, refuse_unstorable)


def _check_scalar(value: Any, refuse_unstorable: bool) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{value} is not a valid JSON number")
    if isinstance(value, str):
        if refuse_unstorable:
            _check_storable(value)
    elif not (isinstance(value, int | float) or value is None):  # bool is an int
        raise BadRequest(f"values of type {type(value).__name__} are not allowed")


def _check_storable(text: str) -> None:
    # An ASCII string can hold only one of them, NUL, which ``in`` finds faster.
    if ("\0" in text) if text.isascii() else _UNSTORABLE.search(text):
        raise BadRequest("strings must not contain NUL characters or unpaired surrogates")


def _error_path(error: Any) -> str:
    path = error.json_path
    return "(root)" if path == "$" else path.removeprefix("$.").removeprefix("$")


# A value quoted in an error message is shortened to about this many characters: the
# message says which value, not all of it (a spec's value may be megabytes long).
_QUOTED = reprlib.Repr()
_QUOTED.maxstring = _QUOTED.maxother = 80
_QUOTED.maxlist = _QUOTED.maxdict = 4


def _message(error: Any) -> str:
    """jsonschema's message, but for a pattern the schema describes, the description
    rather than the regular expression, and the value it quotes shortened."""
    message = _full_message(error)
    quoted = repr(error.instance)
    if len(quoted) > _QUOTED.maxstring and quoted in message:
        message = message.replace(quoted, _QUOTED.repr(error.instance))
    return message


def _full_message(error: Any) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "pattern" and schema.get("description"):
        return f"{error.instance!r} does not match: {schema['description']}"
    alternatives = error.validator_value if error.validator == "anyOf" else None
    if isinstance(alternatives, list) and all(
        isinstance(one, dict) and list(one) == ["required"] for one in alternatives
    ):
        names = [name for one in alternatives for name in one["required"]]
        return " or ".join(repr(name) for name in names) + " is required"
    refused = error.validator_value if isinstance(error.validator_value, dict) else {}
    if error.validator == "not" and refused.get("description"):
        return f"{error.instance!r} is reserved: {refused['description']}"
    return error.message


class SchemaValidator:
    """A JSON Schema, checked and compiled once, reporting every error with its path.

    Whether an instance is valid is decided by jsonschema-rs, a compiled validator (why:
    docs/decisions/0003-two-schema-validators.md); what
    is wrong with one it refuses is told by jsonschema, whose errors carry the keyword,
    the subschema and the value the messages are built from. Should the two ever
    disagree on a refused instance, jsonschema-rs's own errors are the answer: the
    compiled verdict stands. An instance jsonschema-rs cannot read (a value that is not
    JSON, a string with an unpaired surrogate) is judged by jsonschema alone.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        checker = validator_for(schema, default=Draft202012Validator)
        checker.check_schema(schema)
        self._validator = checker(schema)
        self._compiled = jsonschema_rs.validator_for(schema, validate_formats=False)

    def errors(self, instance: Any) -> list[str]:
        """Every problem in ``instance``, as ``"<path>: <message>"``, sorted by path."""
        try:
            if self._compiled.is_valid(instance):
                return []
            compiled_refused = True
        except (ValueError, TypeError):  # not JSON to jsonschema-rs
            compiled_refused = False
        found = sorted(
            self._validator.iter_errors(instance),
            key=lambda error: ([str(part) for part in error.absolute_path], error.message),
        )
        if found or not compiled_refused:
            return [f"{_error_path(error)}: {_message(error)}" for error in found]
        return sorted(
            f"{_json_path(error.instance_path)}: {error.message}"
            for error in self._compiled.iter_errors(instance)
        )

    def check(self, instance: Any) -> None:
        problems = self.errors(instance)
        if problems:
            raise InvalidSpec(*problems)


def _json_path(parts: list[str | int]) -> str:
    """``inputs[0].kind`` for the parts ``["inputs", 0, "kind"]``, as jsonschema writes it."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    return path.removeprefix(".") or "(root)"


# What the DataHub client sends for "published" (push-flow sends them as is).
FINDABILITY_ALIASES = ("public", "publish")


def normalised(spec: Any) -> Any:
    """The spec as specstore reads it, before the schema sees it (the server and the
    command line alike): ``findability`` given as one of FINDABILITY_ALIASES is
    ``published``. Changed in place, and returned."""
    meta = spec.get("meta") if isinstance(spec, dict) else None
    if isinstance(meta, dict) and meta.get("findability") in FINDABILITY_ALIASES:
        meta["findability"] = "published"
    return spec


@cache
def spec_validator() -> SchemaValidator:
    return SchemaValidator(load_schema(SPEC_SCHEMA))


@cache
def event_validator() -> SchemaValidator:
    return SchemaValidator(load_schema(EVENT_SCHEMA))
