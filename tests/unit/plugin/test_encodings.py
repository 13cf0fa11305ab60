"""A table's text encoding, read from the whole file (datapackage_pipelines_specstore.steps'
load step, as both engines run it): a file that is not UTF-8 read in the encoding detected
around its first byte that is not, however far into the file; one that cannot be read in
the encoding declared fails naming the resource and the fix."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from dataflows import Flow
from datapackage_pipelines_specstore.fetch import Limits
from datapackage_pipelines_specstore.steps import load

from tests.support.flaky import Answer, FlakyServer

LIMITS = Limits(timeout=5, allow_networks=("127.0.0.0/8",), retries=0)
# Far past the first kilobytes a guess reads, the first characters beyond ASCII.
ROWS = [f"Town {number},{number}" for number in range(20_000)] + ["Zürich,1", "Kraków,2"]
LATIN_1 = ("city,number\n" + "\n".join(ROWS) + "\n").encode("latin-1")


@pytest.fixture(scope="module")
def server() -> Iterator[FlakyServer]:
    running = FlakyServer()
    running.script("/cities.csv", Answer(200, LATIN_1, {"Content-Type": "text/csv"}))
    yield running
    running.close()


def _load(server: FlakyServer, **options: str) -> list[dict]:
    resource = {"url": server.url + "cities.csv", "name": "cities", "format": "csv"}
    steps = load(
        {"resources": [{**resource, "options": options}], "limits": LIMITS.as_parameters()}
    )
    data, _, _ = Flow(*steps).results()
    return data[0]


def test_a_latin_1_file_without_a_declared_encoding_is_read_as_detected(server, caplog):
    with caplog.at_level(logging.INFO, logger="specstore"):
        rows = _load(server)
    assert len(rows) == 20_002
    assert rows[-2:] == [{"city": "Zürich", "number": 1}, {"city": "Kraków", "number": 2}]
    (said,) = [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert said.startswith("resource cities: not UTF-8: read as ")
    assert said.endswith(
        "the encoding detected (declare tabulator: {encoding: ...} in the spec's processing "
        "to choose another)"
    )


def test_a_declared_encoding_the_file_is_not_in_fails_naming_the_resource_and_the_fix(server):
    with pytest.raises(Exception) as failed:
        _load(server, encoding="ascii")
    # (dataflows names the processor first.)
    assert str(failed.value).split(": ", 1)[1] == (
        f"resource cities: {server.url}cities.csv cannot be read as csv: its text is not "
        "ascii: declare the file's encoding in the spec, processing: [{input: cities, "
        "tabulator: {encoding: <its encoding>}}]"
    )


def test_the_declared_encoding_is_used_when_it_fits(server):
    rows = _load(server, encoding="latin-1")
    assert rows[-1] == {"city": "Kraków", "number": 2}
