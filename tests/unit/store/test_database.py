"""JSON documents as the store sends them to its database and reads them back: exact for
every value a spec or an event may hold, whichever parser reads them."""

from __future__ import annotations

import json

import pytest

from specstore.store.database import json_document, json_text

DOCUMENTS = [
    {"logs": ["load: 3 rows", "Zoë ✓ 数据"], "stats": {"rows": 3, "mean": 0.1}},
    {"big": 2**70, "negative": -(2**63) - 1, "edge": 2**64 - 1, "small": 1e-7},
    {"digits in text": "1234567890123456789012", "float": 0.1234567890123456789},
    [None, True, False, {"": [[]]}, "line \u2028 separator", 'a "quote" \\'],
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_a_document_reads_back_exactly_from_bytes_and_from_text(document):
    text = json_text(document)
    for data in (text, text.encode()):
        read = json_document(data)
        assert read == document
        assert json.dumps(read, sort_keys=True) == json.dumps(document, sort_keys=True)


def test_integers_past_64_bits_read_back_as_integers():
    read = json_document(json_text({"count": 2**70, "list": [-(2**65)]}).encode())
    assert read == {"count": 2**70, "list": [-(2**65)]}
    assert type(read["count"]) is int


def test_text_the_fast_parser_refuses_is_read_by_the_standard_library():
    # A lone surrogate, as an older release could have stored in a SQLite database.
    assert json_document('{"a": "\\ud800"}') == {"a": "\ud800"}
    assert json_document(b'{"a": "\\ud800"}') == {"a": "\ud800"}


def test_text_no_parser_reads_is_an_error():
    with pytest.raises(ValueError):
        json_document(b'{"a": ')
