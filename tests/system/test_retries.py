"""Sources that fail for a moment, on both engines: a real source server on loopback that
answers 503 on cue, the example's data package run by the embedded runner and by a real
DPP (``dpp run``, specstore's processors in DPP's virtualenv)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import Embedded, OnDpp, dpp_stack
from tests.support.flaky import XLSX, Answer, FlakyServer, file_answer
from tests.support.metrics import metric_value
from tests.support.pipelines import EXAMPLE_DATA, carrying_its_package

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

UNAVAILABLE = Answer(503, b"busy")


@pytest.fixture(scope="module")
def source() -> Iterator[FlakyServer]:
    server = FlakyServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def on_dpp(tmp_path_factory: pytest.TempPathFactory, keypair: Any) -> Iterator[OnDpp]:
    root = tmp_path_factory.mktemp("retries-dpp")
    with dpp_stack(root, keypair.public_pem, DOWNLOAD_RETRY_BACKOFF="0.2") as stack:
        yield stack


@pytest.fixture(params=["embedded", "dpp"])
def engine(request: pytest.FixtureRequest, make_app: Any, tmp_path: Path) -> Embedded | OnDpp:
    if request.param == "dpp":
        return request.getfixturevalue("on_dpp")
    app = make_app(
        runner_workers=1,
        output_dir=str(tmp_path / "output"),
        data_dir=str(tmp_path / "data"),
        download_retry_backoff=0.2,
    )
    return Embedded(app, tmp_path / "output")


_datasets = iter(range(10_000))


def _spec(source: FlakyServer) -> tuple[dict[str, Any], str]:
    """The example, its descriptor carried, its files on ``source`` under a folder of
    its own (scripted by the test); and that folder's path."""
    folder = f"/run-{next(_datasets)}/"
    spec = carrying_its_package(source.url.rstrip("/") + folder, dataset=folder.strip("/"))
    source.script(folder + "population.xlsx", XLSX)
    return spec, folder


def _run(engine: Embedded | OnDpp, keypair: Any, spec: dict[str, Any]) -> tuple[dict, dict]:
    status, body = engine.upload(spec, keypair.token("alice"))
    assert status == 200, body
    dataset = spec["meta"]["dataset"]
    final = engine.finish(dataset)
    info = json.loads(engine.get(f"/source/alice/{dataset}/info")[1])
    return final, info


def test_two_503s_then_the_data_the_run_succeeds_and_its_log_shows_two_retries(
    engine, source, keypair
):
    spec, folder = _spec(source)
    url = source.url.rstrip("/") + folder + "gdp-2019.csv"
    data = (EXAMPLE_DATA / "gdp-2019.csv").read_bytes()
    source.script(folder + "gdp-2019.csv", UNAVAILABLE, UNAVAILABLE, file_answer(data))
    before = metric_value(engine, "specstore_download_retries_total")

    final, info = _run(engine, keypair, spec)

    assert final["state"] == "SUCCEEDED", info["error_log"]
    assert source.requests(folder + "gdp-2019.csv") == 3
    # (DPP's log names the step each line comes from.)
    retries = [
        line.removeprefix("specstore.flow: ") for line in final["logs"] if "; retry " in line
    ]
    assert [line.split(" in ")[0] for line in retries] == [
        f"{url} cannot be read: HTTP 503; retry 1 of 3",
        f"{url} cannot be read: HTTP 503; retry 2 of 3",
    ]
    assert info["stats"]["retries.gdp"] == 2
    assert metric_value(engine, "specstore_download_retries_total") == before + 2
    # And the data is the file's, published.
    published = {output["name"]: output for output in final["outputs"]}
    assert "gdp_csv" in published


def test_a_source_that_stays_unavailable_fails_the_run_naming_the_url_and_the_status(
    engine, source, keypair
):
    spec, folder = _spec(source)
    source.script(folder + "gdp-2019.csv", UNAVAILABLE)

    final, info = _run(engine, keypair, spec)

    url = source.url.rstrip("/") + folder + "gdp-2019.csv"
    assert final["state"] == "FAILED"
    assert info["error_log"] == [f"resource gdp: {url} cannot be read: HTTP 503 (tried 4 times)"]
    assert source.requests(folder + "gdp-2019.csv") == 4
    assert len([line for line in final["logs"] if "; retry " in line]) == 3


def test_a_404_is_not_tried_again(engine, source, keypair):
    spec, folder = _spec(source)
    source.script(folder + "gdp-2019.csv", Answer(404, b"no"), file_answer(b"a,b\n1,2\n"))

    final, info = _run(engine, keypair, spec)

    url = source.url.rstrip("/") + folder + "gdp-2019.csv"
    assert final["state"] == "FAILED"
    assert info["error_log"] == [f"resource gdp: {url} cannot be read: HTTP 404"]
    assert source.requests(folder + "gdp-2019.csv") == 1
