"""What users are shown of a pipeline and of the engines' reports: no server path, no
secret in a query string (specstore.pipelines.reports, and the plugin's redaction)."""

from __future__ import annotations

import json
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


# As PostgreSQL writes jsonb (", " and ": ", non-ASCII as it is), as SQLite keeps
# SQLAlchemy's JSON (non-ASCII escaped), and compact.
encodings = st.sampled_from(
    [
        {"ensure_ascii": False},
        {"ensure_ascii": True},
        {"ensure_ascii": False, "separators": (",", ":")},
    ]
)


# The second output folder's name holds what would match across two strings of a JSON
# text (``["/srv/o", "ut"]``) if it were looked for in the text.
@pytest.mark.parametrize("output", [OUTPUT, '/srv/o", "ut'])
@settings(max_examples=400, deadline=None)
@given(data=st.data(), encoding=encodings)
def test_fuzz_a_value_cleaned_in_its_json_text_is_the_value_cleaned(output, data, encoding):
    """``json_text`` cleans the text itself when it can (no backslash in it, no character
    JSON escapes in the paths replaced): the same value as decoding and cleaning it."""
    reports = Reports(output, [DPP])
    value = data.draw(json_values(output))
    text = json.dumps(value, **encoding)
    shown = reports.json_text(text, "alice", "gdp")
    assert json.loads(shown) == reports.value(value, "alice", "gdp")


def test_a_path_that_would_match_across_strings_is_never_looked_for_in_the_text():
    reports = Reports('/srv/o", "ut', [DPP])
    assert reports.json_text('["/srv/o", "ut"]', "alice", "gdp") == '["/srv/o","ut"]'
    text = json.dumps(["/srv/o", "ut", '/srv/o", "ut/alice/gdp/data.csv'])
    assert json.loads(reports.json_text(text, "alice", "gdp")) == ["/srv/o", "ut", "data.csv"]


def test_a_pipeline_without_escapes_is_cleaned_in_its_text():
    reports = Reports(OUTPUT, [DPP])
    text = json.dumps(
        {
            "hooks": ["http://specstore.example/source/update?token=s3cret&revision=2"],
            "pipeline": [
                {"run": "dump_to_path", "parameters": {"out-path": f"{DATASET}/.staging/2/dp"}},
                {"run": "specstore.publish", "parameters": {"target": DATASET}},
                {"run": "load", "parameters": {"from": f"{DPP}/alice/x", "tmp": "/tmp/abc/d"}},
            ],
            f"{OUTPUT}/bob/key": 1,
        }
    )
    # Written as it came (PostgreSQL's spacing kept): cleaned in the text, not re-encoded.
    assert reports.json_text(text, "alice", "gdp") == json.dumps(
        {
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
    )


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
