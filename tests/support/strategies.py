"""Hypothesis strategies for what hostile callers send: valid specs drawn from the schema,
broken ones, and event payloads."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from specstore.validation import (
    EVENT_SCHEMA,
    SPEC_SCHEMA,
    load_schema,
)

FUZZ_EXAMPLES = 50


# Specs generated from the schema cost about a second each to make, whatever the
# database: fewer of them, on SQLite only (the raw-body, event and header fuzzing
# runs on both databases).
SPEC_EXAMPLES = 25


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


# Patterns the generator handles slowly (look-aheads, long alternations), narrowed to
# subsets of themselves: everything generated is still valid under the real schema.
NARROWER_PATTERNS = {
    load_schema(SPEC_SCHEMA)["$defs"]["segment"]["pattern"]: "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}$",
    load_schema(SPEC_SCHEMA)["$defs"]["httpUrl"]["pattern"]: (
        "^https?://[a-z0-9]{1,12}(\\.[a-z]{2,6}){0,2}(:[1-9][0-9]{1,3})?(/[A-Za-z0-9._~-]{0,12}){0,3}$"
    ),
}


def inlined(name: str) -> dict[str, Any]:
    """A published schema with its $defs inlined, as hypothesis-jsonschema wants it."""
    schema = copy.deepcopy(load_schema(name))
    definitions = schema.pop("$defs", {})
    schema.pop("$id", None)
    schema.pop("$schema", None)

    def inline(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                return inline(definitions[value["$ref"].rsplit("/", 1)[-1]])
            value = {key: inline(item) for key, item in value.items()}
            if value.get("pattern") in NARROWER_PATTERNS:
                value["pattern"] = NARROWER_PATTERNS[value["pattern"]]
            return value
        if isinstance(value, list):
            return [inline(item) for item in value]
        return value

    return inline(schema)


VALID_SPECS = from_schema(inlined(SPEC_SCHEMA))


HOSTILE_VALUES = st.one_of(
    st.just("../../../etc/passwd"),
    st.just("..\\..\\windows"),
    st.just("a\x00b"),
    st.just("/absolute/path"),
    st.just("\udcff"),
    st.just("x" * 10_000),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.text(max_size=40),
)


def paths_in(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_in(item, (*prefix, index))
    return found


@st.composite
def broken_specs(draw: st.DrawFn) -> Any:
    """A valid spec, then broken in one to three places: values replaced by hostile
    ones, keys dropped, or the whole thing made into something that is not a spec."""
    spec = draw(VALID_SPECS)
    if draw(st.integers(0, 9)) == 0:
        return draw(HOSTILE_VALUES)
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path in paths_in(spec) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(HOSTILE_VALUES)
    return spec


EVENT_PAYLOADS = st.one_of(
    from_schema(inlined(EVENT_SCHEMA)),
    st.dictionaries(
        st.sampled_from(["pipeline_id", "pipeline", "event", "success", "errors", "log", "stats"]),
        HOSTILE_VALUES,
        max_size=5,
    ),
    HOSTILE_VALUES,
)
