"""The two schema validators (specstore.validation) judge every spec and event alike;
where they disagree, the compiled verdict stands."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from specstore.validation import (
    EVENT_SCHEMA,
    SPEC_SCHEMA,
    SchemaValidator,
    event_validator,
    load_schema,
    spec_validator,
)
from tests.support.strategies import EVENT_PAYLOADS, FUZZ, SPEC_EXAMPLES, VALID_SPECS, broken_specs


@settings(FUZZ, max_examples=SPEC_EXAMPLES)
@given(spec=st.one_of(VALID_SPECS, broken_specs()))
def test_fuzz_the_compiled_validator_judges_specs_as_jsonschema_does(spec):
    compiled, python = _verdicts(SPEC_SCHEMA, spec)
    assert compiled in (python, None), (compiled, python)
    problems = spec_validator().errors(spec)
    assert (problems == []) is python, problems
    if not python:
        # The words are jsonschema's, with the path to what is wrong.
        assert all(": " in problem for problem in problems), problems


@FUZZ
@given(payload=EVENT_PAYLOADS)
def test_fuzz_the_compiled_validator_judges_events_as_jsonschema_does(payload):
    compiled, python = _verdicts(EVENT_SCHEMA, payload)
    assert compiled in (python, None), (compiled, python)
    assert (event_validator().errors(payload) == []) is python


def test_where_the_validators_disagree_the_compiled_verdict_stands():
    # Python's \d also matches other scripts' digits; ECMA-262's, which jsonschema-rs
    # follows, only 0-9. The compiled validator refuses, jsonschema finds nothing wrong:
    # the instance is refused, in jsonschema-rs's words, with the path.
    validator = SchemaValidator({"properties": {"number": {"pattern": "^\\d+$"}}})
    assert validator.errors({"number": "\u0661\u0662"}) == [
        'number: "\u0661\u0662" does not match "^\\d+$"'
    ]
    assert validator.errors({"number": "12"}) == []
    # A value jsonschema-rs cannot read is judged by jsonschema alone.
    assert validator.errors({"number": "1\udcff"}) == [
        "number: '1\\udcff' does not match '^\\\\d+$'"
    ]


def _verdicts(name: str, instance: Any) -> tuple[bool | None, bool]:
    """(jsonschema-rs's verdict, None where it cannot read the instance; jsonschema's)."""
    schema = load_schema(name)
    try:
        compiled = jsonschema_rs.validator_for(schema, validate_formats=False).is_valid(instance)
    except (ValueError, TypeError):
        compiled = None
    return compiled, not any(Draft202012Validator(schema).iter_errors(instance))
