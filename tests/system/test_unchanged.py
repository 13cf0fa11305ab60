"""Scheduled revisions of sources that did not change end without a run, on both engines:
a real source server on loopback that answers conditional requests (the CSV, with an ETag
and a Last-Modified) or serves the same bytes again (the spreadsheet, no validators), the
example's data package run by the embedded runner and by a real DPP; the schedule made
due in the database, fired by the server's own scheduler."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import Embedded, OnDpp, dpp_stack
from tests.support.flaky import XLSX, FlakyServer, file_answer
from tests.support.metrics import metric_value
from tests.support.pipelines import EXAMPLE_DATA, carrying_its_package

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

GDP = (EXAMPLE_DATA / "gdp-2019.csv").read_bytes()
UNCHANGED = "unchanged since revision {}: every source (2 sources) is as it was; nothing ran"


@pytest.fixture(scope="module")
def source() -> Iterator[FlakyServer]:
    server = FlakyServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def on_dpp(tmp_path_factory: pytest.TempPathFactory, keypair: Any) -> Iterator[OnDpp]:
    with dpp_stack(tmp_path_factory.mktemp("unchanged-dpp"), keypair.public_pem) as stack:
        yield stack


@pytest.fixture(params=["embedded", "dpp"])
def engine(request: pytest.FixtureRequest, make_app: Any, tmp_path: Path) -> Embedded | OnDpp:
    if request.param == "dpp":
        return request.getfixturevalue("on_dpp")
    app = make_app(
        runner_workers=1, output_dir=str(tmp_path / "output"), data_dir=str(tmp_path / "data")
    )
    return Embedded(app, tmp_path / "output")


_datasets = iter(range(10_000))


def _spec(source: FlakyServer) -> tuple[dict[str, Any], str]:
    """The example, scheduled, its descriptor carried, its files on ``source`` under a
    folder of its own; and that folder's path."""
    folder = f"/scheduled-{next(_datasets)}/"
    spec = carrying_its_package(source.url.rstrip("/") + folder, dataset=folder.strip("/"))
    spec["schedule"] = "every 10m"
    source.script(folder + "gdp-2019.csv", file_answer(GDP))
    source.script(folder + "population.xlsx", XLSX)
    return spec, folder


def _uploaded(engine: Embedded | OnDpp, keypair: Any, spec: dict[str, Any]) -> dict[str, Any]:
    status, body = engine.upload(spec, keypair.token("alice"))
    assert status == 200, body
    return _revision(engine, spec, body["revision"])


def _scheduled(engine: Embedded | OnDpp, spec: dict[str, Any], number: int) -> dict[str, Any]:
    """Revision ``number``, fired by the schedule made due now, once it has ended."""
    dataset = spec["meta"]["dataset"]
    engine.make_due(dataset)
    deadline = time.monotonic() + 30  # the scheduler looks every 5 s
    while json.loads(engine.get(f"/source/alice/{dataset}/latest")[1])["revision"] != number:
        assert time.monotonic() < deadline, f"revision {number} was not fired"
        time.sleep(0.2)
    return _revision(engine, spec, number)


def _revision(engine: Embedded | OnDpp, spec: dict[str, Any], number: int) -> dict[str, Any]:
    dataset = spec["meta"]["dataset"]
    final = engine.finish(dataset)
    status, text = engine.get(f"/source/alice/{dataset}/{number}")
    assert status == 200, text
    return {**json.loads(text), "logs": final["logs"]}


def _files(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``roots``: its size and when it last changed."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_schedule_that_finds_its_sources_unchanged_ends_without_a_run(engine, source, keypair):
    spec, folder = _spec(source)
    first = _uploaded(engine, keypair, spec)
    assert first["state"] == "SUCCEEDED", first["errors"]
    recorded = first["stats"]["source.gdp"]
    assert recorded["sha256"] and recorded["etag"] and recorded["last_modified"]
    assert set(first["stats"]["source.population"]) == {"sha256", "bytes"}
    written = _files(engine.output, engine.data_dir)
    asked = {path: source.requests(folder + path) for path in ("gdp-2019.csv", "population.xlsx")}
    before = metric_value(engine, "specstore_unchanged_revisions_total")

    second = _scheduled(engine, spec, 2)

    assert (second["state"], second["trigger"], second["errors"]) == ("SUCCEEDED", "scheduled", [])
    assert second["logs"] == [UNCHANGED.format(1)]
    assert second["stats"] == {**first["stats"], "unchanged_since": 1}
    # It points at the publication of revision 1, which is still there; nothing new is.
    assert second["datapackage_url"] == first["datapackage_url"]
    assert second["outputs"] == first["outputs"]
    assert _files(engine.output, engine.data_dir) == written
    # Each source asked once: the CSV by a conditional request (answered 304), the
    # spreadsheet, whose server gives no validators, fetched and hashed.
    assert source.requests(folder + "gdp-2019.csv") == asked["gdp-2019.csv"] + 1
    conditional = source.seen[folder + "gdp-2019.csv"][-1].headers
    assert conditional["If-None-Match"] == recorded["etag"]
    assert conditional["If-Modified-Since"] == recorded["last_modified"]
    assert source.requests(folder + "population.xlsx") == asked["population.xlsx"] + 1
    assert "If-None-Match" not in source.seen[folder + "population.xlsx"][-1].headers
    assert metric_value(engine, "specstore_unchanged_revisions_total") == before + 1

    # Unchanged again: still the publication of revision 1, as the log says.
    third = _scheduled(engine, spec, 3)
    assert third["logs"] == [UNCHANGED.format(1)]
    assert third["stats"]["unchanged_since"] == 1
    assert third["datapackage_url"] == first["datapackage_url"]


def test_a_changed_source_runs_the_scheduled_revision_and_an_upload_always_runs(
    engine, source, keypair
):
    spec, folder = _spec(source)
    first = _uploaded(engine, keypair, spec)
    assert first["state"] == "SUCCEEDED", first["errors"]
    changed = GDP + b"Spain,2019,1394.12\n"
    source.script(folder + "gdp-2019.csv", file_answer(changed, modified=1_800_000_000.0))

    second = _scheduled(engine, spec, 2)

    assert (second["state"], second["trigger"]) == ("SUCCEEDED", "scheduled"), second["errors"]
    assert "unchanged_since" not in second["stats"]
    assert second["stats"]["source.gdp"]["sha256"] != first["stats"]["source.gdp"]["sha256"]
    assert second["stats"]["count_of_rows"] == first["stats"]["count_of_rows"] + 1
    assert second["datapackage_url"] != first["datapackage_url"]
    assert not any(line.startswith("unchanged since") for line in second["logs"])

    # A person pushing the same spec again: it runs, though nothing changed.
    third = _uploaded(engine, keypair, spec)
    assert (third["state"], third["trigger"]) == ("SUCCEEDED", "dirty-task"), third["errors"]
    assert "unchanged_since" not in third["stats"]
    assert third["stats"]["source.gdp"] == second["stats"]["source.gdp"]
