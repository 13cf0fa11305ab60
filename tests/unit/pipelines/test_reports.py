"""What users are shown of a pipeline and of the engines' reports: no server path, no
secret in a query string (specstore.pipelines.reports, and the plugin's redaction)."""

from __future__ import annotations

import json
import re
import tempfile

import pytest
from datapackage_pipelines_specstore.redaction import redact_query
from hypothesis import given, settings
from hypothesis import strategies as st

from specstore.pipelines.reports import Reports

OUTPUT = "/srv/specstore/output"
DPP = "/srv/specstore/dpp"
DATASET = f"{OUTPUT}/alice/gdp"
TEMPORARY = tempfile.gettempdir()


def json_values(output: str) -> st.SearchStrategy:
    """JSON values whose strings are made of what cleaning looks for (under ``output``)
    and of what JSON text writes otherwise than as itself: quotes, backslashes, controls,
    and non-ASCII when it writes ASCII only."""
    pieces = st.sampled_from(
        [
            output,
            f"{output}/alice/gdp",
            f"{output}/alice/gdp/",
            *output.split('"'),
            DPP,
            f"{TEMPORARY}/",
            "?token=",
            "&jwt=",
            "token=",
            "=",
            "&",
            "#",
            "/",
            " ",
            ")",
            ",",
            "'",
            '"',
            "\\",
            "\n",
            "\x01",
            "é",
            "\u2028",
            "x",
        ]
    )
    strings = st.lists(pieces | st.text(max_size=3), max_size=8).map("".join)
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=4)
        ),
        max_leaves=16,
    )


def strings_in(value) -> list[str]:
    """Every string of a JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings_in(item)]]
    if isinstance(value, list):
        return [text for item in value for text in strings_in(item)]
    return []


SECRET_LEFT = re.compile(r"[?&](?:token|jwt)=(?!\*\*\*(?:[&\s#\"]|$))")


# The second output folder's name holds what JSON text writes otherwise than as itself.
@pytest.mark.parametrize("output", [OUTPUT, '/srv/o", "ut'])
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fuzz_no_server_path_or_secret_is_left_in_what_is_shown(output, data):
    """However a pipeline's strings (keys too) are made of paths, query strings and
    characters JSON escapes, what is shown of it names no output folder, no DPP folder,
    and no secret query value; and it is JSON still."""
    reports = Reports(output, [DPP])
    shown = reports.shown(data.draw(json_values(output)), "alice", "gdp")
    assert json.loads(json.dumps(shown)) == shown
    for text in strings_in(shown):
        assert output not in text and DPP not in text
        assert not SECRET_LEFT.search(text), text


def test_a_pipeline_is_shown_with_its_paths_relative_and_its_secrets_replaced():
    reports = Reports(OUTPUT, [DPP])
    pipeline = {
        "hooks": ["http://specstore.example/source/update?token=s3cret&revision=2"],
        "pipeline": [
            {"run": "dump_to_path", "parameters": {"out-path": f"{DATASET}/.staging/2/dp"}},
            {"run": "specstore.publish", "parameters": {"target": DATASET}},
            {"run": "load", "parameters": {"from": f"{DPP}/alice/x", "tmp": "/tmp/abc/d"}},
        ],
        f"{OUTPUT}/bob/key": 1,
    }
    assert reports.shown(pipeline, "alice", "gdp") == {
        "hooks": ["http://specstore.example/source/update?token=***&revision=2"],
        "pipeline": [
            {"run": "dump_to_path", "parameters": {"out-path": ".staging/2/dp"}},
            {"run": "specstore.publish", "parameters": {"target": "."}},
            {
                "run": "load",
                "parameters": {"from": "<pipelines>/alice/x", "tmp": "<tmp>"}
                if TEMPORARY == "/tmp"
                else {"from": "<pipelines>/alice/x", "tmp": "/tmp/abc/d"},
            },
        ],
        "<output>/bob/key": 1,
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://h/u?token=abc&revision=1", "http://h/u?token=***&revision=1"),
        ("http://h/u?a=1&jwt=e.y.j#part", "http://h/u?a=1&jwt=***#part"),
        ('fetching "http://h/u?token=abc" failed', 'fetching "http://h/u?token=***" failed'),
        ("GET /x?token=a&token=b HTTP/1.1", "GET /x?token=***&token=*** HTTP/1.1"),
        ("http://h/u?mytoken=abc&xjwt=1", "http://h/u?mytoken=abc&xjwt=1"),
        ("token=abc at the start", "token=abc at the start"),
        ("no query at all", "no query at all"),
    ],
)
def test_secret_query_values_are_replaced(text, shown):
    assert redact_query(text) == shown
