"""Many owners on one specstore, with runs: nothing one owner does touches another's
tables or data, or starves their runs; on both engines where it applies. Each finding of
the review, reproduced as it was found, and the safe outcome asserted.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from specstore.config import configure
from tests.support.api import make_spec, status_of, stored_revisions, upload
from tests.support.archives import zip_of
from tests.support.dpp import specstore_for
from tests.support.net import RouteServer, StaticFiles, send
from tests.support.pipelines import (
    GDP_ROWS,
    HANDED_OVER,
    POPULATION_ROWS,
    database_tables,
    example_spec,
    wait_for,
)
from tests.support.server import get_json, post_spec


def test_an_rdbms_output_writes_only_the_owners_own_tables(
    make_app,
    keypair,
    example_data,
    warehouse,
):
    """Reproduced: alice's `gdp` table in a shared warehouse held her rows, then
    mallory's, after mallory pushed a resource also named `gdp` (mode rewrite). Now each
    dataset's tables are its own; a table that was there already (the operator's `gdp`,
    or anything else in the database) is left as it was."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(warehouse)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE gdp (kept TEXT)"))
        connection.execute(sqlalchemy.text("INSERT INTO gdp VALUES ('the operator''s')"))
    engine.dispose()
    app = make_app(runner_workers=2, runs_per_owner=0, engines={"WAREHOUSE": warehouse})
    client = app.test_client()
    for owner in ("alice", "mallory"):
        spec = example_spec(example_data, ownerid=owner)
        spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "warehouse"}}]
        assert upload(client, spec, keypair.token(owner)).status_code == 200
        assert wait_for(status_of(client, owner))["state"] == "SUCCEEDED"

    tables = database_tables(warehouse)
    assert sorted(tables) == [
        "alice/gdp/gdp",
        "alice/gdp/population",
        "gdp",
        "mallory/gdp/gdp",
        "mallory/gdp/population",
    ]
    assert tables["gdp"]["rows"] == [("the operator's",)]
    for owner in ("alice", "mallory"):
        assert tables[f"{owner}/gdp/population"]["rows"] == POPULATION_ROWS
        assert len(tables[f"{owner}/gdp/gdp"]["rows"]) == len(GDP_ROWS)


def test_a_value_that_fails_its_type_is_described_not_quoted(make_app, keypair, internal_answer):
    app = make_app(runner_workers=1)
    client = app.test_client()
    assert upload(client, internal_answer, keypair.token("alice")).status_code == 200
    status = wait_for(status_of(client, dataset="values"))
    assert status["state"] == "FAILED"
    assert status["errors"][1:] == [EXPECTED_TYPE_ERROR]
    for path in ("status", "info", "1", "latest"):
        assert SECRET not in client.get(f"/source/alice/values/{path}").text, path
    assert SECRET not in client.get("/datasets/alice/values").text
    # Nor in the validation report, which is published.
    report = client.get(urlsplit(status["errors"][0].rsplit(" ", 1)[1]).path)
    assert report.status_code == 200
    assert report.get_json()["error-count"] == 1
    assert SECRET not in report.text


def test_on_dpp_a_value_that_fails_its_type_is_described_not_quoted(
    dpp,
    start_server,
    keypair,
    internal_answer,
    tmp_path,
):
    server = specstore_for(dpp, start_server, keypair, tmp_path / "output")
    assert post_spec(server, keypair, internal_answer).status_code == 200
    wait_for(lambda: get_json(server, "/source/alice/values/status"), states=HANDED_OVER)
    ran = dpp.run("alice/values")
    assert ran.returncode != 0
    status = wait_for(lambda: get_json(server, "/source/alice/values/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert status["errors"][1:] == [EXPECTED_TYPE_ERROR]
    for path in ("status", "info"):
        assert (
            SECRET not in requests.get(f"{server.url}/source/alice/values/{path}", timeout=10).text
        )
    report = requests.get(status["errors"][0].rsplit(" ", 1)[1], timeout=10)
    assert report.status_code == 200 and SECRET not in report.text


@pytest.mark.parametrize("allow", [(), "own name"])
def test_a_name_that_resolves_to_an_internal_address_is_not_fetched(
    make_app, keypair, internal, allow
):
    """With no allow-list, and with the name on it: refused once resolved, the internal
    service never asked."""
    allowed = (_own_name(),) if allow else ()
    app = make_app(runner_workers=1, input_address_allow=(), input_url_allow=allowed)
    client = app.test_client()
    assert upload(client, _reaching_internal(internal), keypair.token("alice")).status_code == 200
    status = wait_for(status_of(client, dataset="reach"))
    assert status["state"] == "FAILED"
    assert re.fullmatch(
        r"resource secret: the host '[^']+' resolves to a (loopback|private) address, which "
        r"inputs may not be fetched from \(INPUT_ADDRESS_ALLOW\)",
        status["errors"][0],
    ), status["errors"]
    assert internal.requests == []


def test_on_dpp_a_name_that_resolves_to_an_internal_address_is_not_fetched(
    dpp,
    start_server,
    keypair,
    internal,
    tmp_path,
):
    server = specstore_for(dpp, start_server, keypair, tmp_path / "output", INPUT_ADDRESS_ALLOW="")
    assert post_spec(server, keypair, _reaching_internal(internal)).status_code == 200
    wait_for(lambda: get_json(server, "/source/alice/reach/status"), states=HANDED_OVER)
    assert dpp.run("alice/reach").returncode != 0
    status = wait_for(lambda: get_json(server, "/source/alice/reach/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert "resolves to a" in status["errors"][0] and "(INPUT_ADDRESS_ALLOW)" in status["errors"][0]
    assert internal.requests == []


def test_expensive_yaml_is_refused_at_once_while_a_poller_is_answered(
    start_server, keypair, tmp_path
):
    """Reproduced: 480 KB of base-60 integers took 26 s and a 500 (660 KB got the worker
    killed); 100 KB of merge keys, 14 s. Each such body at the YAML size limit is now a
    400 that says why, while a status poller keeps getting its answers."""
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path}/s.db",
        AUTH_PUBLIC_KEY=keypair.public_pem,
        RUNNER_WORKERS="0",
        UPLOAD_RATE_LIMIT="off",
    )
    token = keypair.token("alice")
    requests.post(
        server.url + "/source/upload", json=make_spec(), headers={"Auth-Token": token}, timeout=10
    ).raise_for_status()
    polled: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            polled.append(
                requests.get(server.url + "/source/alice/gdp/status", timeout=5).status_code
            )
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for name, (body, message) in HOSTILE_YAML.items():
            assert len(body) <= 1024 * 1024
            started = time.monotonic()
            response = requests.post(
                server.url + "/source/upload",
                data=body,
                headers={"Auth-Token": token, "Content-Type": "application/yaml"},
                timeout=30,
            )
            took = time.monotonic() - started
            assert response.status_code == 400, (name, response.text[:300])
            assert message in response.json()["errors"][0], name
            # Far inside a worker's timeout (before: tens of seconds).
            assert took < 5, (name, took)
    finally:
        stop.set()
        poller.join()
    assert polled and set(polled) == {200}


def test_one_owner_cannot_hold_every_runner_worker(make_app, keypair):
    """Reproduced: two of mallory's datasets with drip-fed resources held both embedded
    runner workers, and alice's upload waited. With one run per owner (the default), her
    second waits while alice's runs on the other worker."""
    assert configure({}).runs_per_owner == 1
    with Gate() as gate:
        app = make_app(runner_workers=2, runs_per_owner=1)
        client = app.test_client()
        for dataset in ("drip-1", "drip-2"):
            spec = _table_spec(gate.url + f"slow/{dataset}.csv", "mallory", dataset)
            assert upload(client, spec, keypair.token("mallory")).status_code == 200
        wait_for(status_of(client, "mallory", "drip-1"), states=("RUNNING",))
        spec = _table_spec(gate.url + "fast.csv", "alice", "quick")
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        try:
            assert wait_for(status_of(client, "alice", "quick"))["state"] == "SUCCEEDED"
            states = {
                name: status_of(client, "mallory", name)()["state"] for name in ("drip-1", "drip-2")
            }
            assert states == {"drip-1": "RUNNING", "drip-2": "REGISTERED"}
        finally:
            gate.opened.set()
        for name in ("drip-1", "drip-2"):
            assert wait_for(status_of(client, "mallory", name))["state"] == "SUCCEEDED"


def test_dpps_planners_serve_owners_in_turn(make_app, keypair, tmp_path):
    """Reproduced: DPP's planners (which fetch the data packages specs do not carry) were
    one line for all owners. mallory's uploads, whose packages take long to come, wait
    for one planner; alice's is planned by the other meanwhile."""
    with Gate() as gate:
        app = make_app(dpp_pipelines_dir=str(tmp_path / "dpp"), runs_per_owner=1)
        client = app.test_client()
        for index in range(4):
            spec = example_spec(gate.url, dataset=f"slow-{index}", ownerid="mallory")
            spec["inputs"][0]["url"] = gate.url + f"slow-package/{index}.json"
            spec["inputs"][0]["parameters"] = {}
            spec["processing"] = []
            assert upload(client, spec, keypair.token("mallory")).status_code == 200
        # alice's data package comes at once.
        gate.routes["/package.json"] = lambda h: send(
            h,
            json.dumps({"resources": [{"name": "t", "path": "fast.csv"}]}).encode(),
            "application/json",
        )
        spec = example_spec(gate.url, dataset="quick")
        spec["inputs"][0]["url"] = gate.url + "package.json"
        spec["inputs"][0]["parameters"] = {}
        spec["processing"] = []
        try:
            assert upload(client, spec, keypair.token("alice")).status_code == 200
            assert wait_for(status_of(client, dataset="quick"), states=HANDED_OVER)["state"] == (
                "REGISTERED"
            )
            waiting = [row for row in stored_revisions(app) if row[0] == "mallory"]
            assert [state for *_, state in waiting] == ["LOADED"] * 4
        finally:
            gate.opened.set()
        for index in range(4):
            assert wait_for(status_of(client, "mallory", f"slow-{index}"), states=HANDED_OVER)


def test_a_workbook_whose_merged_cells_are_filled_is_bounded(make_app, keypair, tmp_path):
    """Filling merged cells reads a workbook whole into memory: one that unpacks to more
    than 64 MiB is refused with the reason, before it is opened."""
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["country", "year"])
    workbook.active.append(["France", 2019])
    buffer = io.BytesIO()
    workbook.save(buffer)
    # The same workbook, its sheet said (in the zip's directory) to unpack to 100 MB.
    data = bytearray(buffer.getvalue())
    name = b"xl/worksheets/sheet1.xml"
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    data[entry + 24 : entry + 28] = (100 * 1024 * 1024).to_bytes(4, "little")
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "merged.xlsx").write_bytes(bytes(data))
    with StaticFiles(str(folder)) as served:
        spec = example_spec(served.url, dataset="merged")
        spec["inputs"][0]["parameters"] = {
            "descriptor": {"resources": [{"name": "merged", "path": "merged.xlsx"}]}
        }
        spec["processing"] = [
            {"input": "merged", "output": "merged", "tabulator": {"fill_merged_cells": True}}
        ]
        spec["outputs"] = [{"kind": "sqlite"}]
        app = make_app(runner_workers=1)
        client = app.test_client()
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        status = wait_for(status_of(client, dataset="merged"))
    assert status["state"] == "FAILED"
    assert status["errors"] == [
        f"resource merged: fill_merged_cells reads a workbook whole, and {served.url}merged.xlsx "
        f"unpacks to more than {64 * 1024 * 1024} bytes: leave the option out, or split the "
        "workbook"
    ]


def test_a_data_package_fetched_is_bounded_by_the_download_limit(make_app, keypair, tmp_path):
    """The data package a spec names is a download like any other (it was capped at
    16 MiB whatever DOWNLOAD_MAX_BYTES said)."""
    folder = tmp_path / "served"
    folder.mkdir()
    descriptor = {"readme": "r" * 5000, "resources": [{"name": "a", "path": "a.csv"}]}
    (folder / "datapackage.json").write_text(json.dumps(descriptor))
    with StaticFiles(str(folder)) as served:
        spec = example_spec(served.url)
        spec["inputs"][0]["parameters"] = {}
        spec["processing"] = []
        app = make_app(runner_workers=1, download_max_bytes=4000)
        client = app.test_client()
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        status = wait_for(status_of(client))
    assert status["state"] == "FAILED"
    assert status["errors"] == [
        f"the data package {served.url}datapackage.json is larger than 4000 bytes, the most "
        "this server downloads (DOWNLOAD_MAX_BYTES)"
    ]


@pytest.mark.parametrize("engine", ["embedded", "dpp"])
def test_a_fetched_data_package_holding_lone_surrogates_is_stored_and_shown(
    make_app, keypair, tmp_path, engine
):
    """Reproduced: a lone surrogate in a fetched descriptor made status, info and the
    dashboard 500 for good on SQLite, and left the revision LOADED for ever on DPP
    (fetched again by every sweep). It is stored as U+FFFD, like an event's."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "a.csv").write_text("a\n1\n")
    (folder / "datapackage.json").write_text(
        '{"title": "broken \\udcff text", "resources": [{"name": "a", "path": "a.csv", '
        '"description": "\\ud800"}]}'
    )
    overrides = {"dpp_pipelines_dir": str(tmp_path / "dpp")} if engine == "dpp" else {}
    with StaticFiles(str(folder)) as served:
        spec = example_spec(served.url)
        spec["inputs"][0]["parameters"] = {}
        spec["processing"] = []
        spec["outputs"] = [{"kind": "sqlite"}]
        app = make_app(runner_workers=1, **overrides)
        client = app.test_client()
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        states = ("SUCCEEDED",) if engine == "embedded" else ("REGISTERED",)
        assert wait_for(status_of(client), states=(*states, "FAILED", "INVALID"))["state"] in states
    for path in ("/source/alice/gdp/status", "/source/alice/gdp/info", "/datasets/alice/gdp"):
        assert client.get(path).status_code == 200, path
    dataset = tmp_path / "output" / "alice" / "gdp"
    if engine == "embedded":
        written = json.loads((dataset / "datapackage" / "datapackage.json").read_text())
    else:  # what the plan gives the package step, for DPP to run
        written = json.loads((dataset / ".plans" / "1.json").read_text())["package"]
    assert written["title"] == "broken \ufffd text"


def test_what_a_client_sends_never_makes_lines_of_its_own_in_the_log(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    forged = 'gdp\n{"request_id": "forged"}\r\x1b[2J'
    quoted = requests.utils.quote(forged, safe="")
    for path in (f"/source/alice/{quoted}/status", f"/datasets/alice/{quoted}", f"/{quoted}"):
        assert requests.get(server.url + path, timeout=10).status_code == 404
    log = server.log.read_text(errors="replace")
    assert log.count("/source/alice/") >= 1  # the requests were logged
    for line in log.splitlines():
        assert not line.startswith('{"request_id": "forged"'), line
        assert "\x1b" not in line and "\r" not in line, repr(line)


def test_a_failed_or_killed_run_leaves_nothing_in_the_temporary_folders(
    make_app, keypair, tmp_path, monkeypatch
):
    """Reproduced: downloads and extracts stayed behind when a load failed before rows
    flowed, or a run was killed at its deadline."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "broken.xlsx").write_bytes(b"PK\x03\x04 not a workbook at all")
    (folder / "packed.csv").write_bytes(zip_of({"packed.csv": b"a,b\n1,2\n"}))
    with StaticFiles(str(folder)) as served, Gate() as gate:
        app = make_app(runner_workers=2, runs_per_owner=0, run_timeout=4)
        client = app.test_client()
        broken = _table_spec(served.url + "broken.xlsx", "alice", "broken")
        broken["inputs"][0]["parameters"]["descriptor"]["resources"][0]["format"] = "xlsx"
        killed = _table_spec(gate.url + "slow/killed.csv", "alice", "killed")
        packed = _table_spec(served.url + "packed.csv", "alice", "packed")
        packed["processing"] = [{"input": "t", "output": "t", "tabulator": {"compression": "zip"}}]
        for spec in (broken, killed, packed):
            assert upload(client, spec, keypair.token("alice")).status_code == 200
        finals = {
            name: wait_for(status_of(client, dataset=name))["state"]
            for name in ("broken", "killed", "packed")
        }
        gate.opened.set()
    assert finals == {"broken": "FAILED", "killed": "FAILED", "packed": "SUCCEEDED"}
    assert "time limit" in status_of(client, dataset="killed")()["errors"][0]
    assert sorted(temporary.iterdir()) == []
    output = tmp_path / "output" / "alice"
    assert sorted(str(path.relative_to(output)) for path in output.rglob(".tmp")) == []


def test_an_npm_publish_does_not_outlive_a_killed_server(
    start_server, keypair, example_data, tmp_path
):
    """Suspected from the code, and so: the npm client a run starts to publish outlived
    the server killed under it. It now dies with the pipeline's process, which dies with
    the server."""
    from tests.support.npm import npm_spec

    registry = SilentRegistry()
    try:
        server = start_server(
            DATABASE_URL=f"sqlite:///{tmp_path}/s.db",
            AUTH_PUBLIC_KEY=keypair.public_pem,
            OUTPUT_DIR=str(tmp_path / "output"),
            RUNNER_WORKERS="1",
            NPM_LOCAL_REGISTRY=registry.url,
            NPM_LOCAL_TOKEN="npm-token",
        )
        response = requests.post(
            server.url + "/source/upload",
            json=npm_spec(example_data),
            headers={"Auth-Token": keypair.token("alice")},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        # Its tarball's path, in its command line and in the title npm gives itself.
        marker = f"publish {tmp_path}"
        deadline = time.monotonic() + 60
        while not _processes_naming(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(marker), "npm publish never started"
        server.process.kill()
        server.process.wait(timeout=10)

        deadline = time.monotonic() + 10
        while _processes_naming(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(marker) == []
    finally:
        registry.close()


EXPECTED_TYPE_ERROR = (
    "resource values, data row 2, field 'amount': a text of 18 characters is not a valid integer"
)


@pytest.fixture
def internal_answer(tmp_path):
    """A data server whose CSV holds, where a number is expected, what an internal
    service answered (the review's `INTERNAL-SECRET-42`), and a spec declaring it."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "values.csv").write_text(f"name,amount\nfirst,1\nsecond,{SECRET}\n")
    with StaticFiles(str(folder)) as served:
        spec = example_spec(served.url, dataset="values")
        spec["inputs"][0]["parameters"] = {
            "descriptor": {
                "resources": [
                    {
                        "name": "values",
                        "path": "values.csv",
                        "schema": {
                            "fields": [
                                {"name": "name", "type": "string"},
                                {"name": "amount", "type": "integer"},
                            ]
                        },
                    }
                ]
            }
        }
        spec["processing"] = []
        spec["outputs"] = [{"kind": "sqlite"}]
        yield spec


@pytest.fixture
def internal():
    """The internal service, on loopback, counting what it is asked."""
    with RouteServer(
        "127.0.0.1", {"/secret.csv": lambda h: send(h, b"a\n" + SECRET.encode())}
    ) as served:
        yield served


def _own_name() -> str:
    """This machine's own name, which resolves to an address of its own: loopback, or
    its private network's."""
    name = socket.gethostname().lower()
    address = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)[0][4][0]
    assert not re.match(r"^(?!10\.|127\.|172\.(1[6-9]|2\d|3[01])\.|192\.168\.)\d", address), (
        f"this test needs the machine's name to resolve to one of its own addresses: {address}"
    )
    return name


def _reaching_internal(internal, dataset="reach"):
    """A spec carrying its data package, whose one resource is the internal service's
    secret, by the machine's own name (no literal address: nothing is refused at upload)."""
    port = internal.host.rsplit(":", 1)[1]
    url = f"http://{_own_name()}:{port}/secret.csv"
    spec = example_spec(url.rsplit("/", 1)[0] + "/", dataset=dataset)
    spec["inputs"][0]["parameters"] = {
        "descriptor": {"resources": [{"name": "secret", "path": url, "format": "csv"}]}
    }
    spec["processing"] = []
    spec["outputs"] = [{"kind": "sqlite"}]
    return spec


class Gate(RouteServer):
    """A data server whose `/slow/<name>.csv` sends its header, then waits until
    :attr:`opened`; `/fast.csv` answers at once."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        super().__init__("127.0.0.1", {"/fast.csv": lambda h: send(h, b"a,b\n1,2\n")})

    def route(self, path: str):
        if path.startswith("/slow/"):
            return self._slow
        if path.startswith("/slow-package/"):
            return self._slow_package
        return super().route(path)

    def _slow(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        handler.end_headers()
        handler.wfile.write(b"a,b\n")
        handler.wfile.flush()
        self.opened.wait(60)
        handler.wfile.write(b"1,2\n")

    def _slow_package(self, handler: BaseHTTPRequestHandler) -> None:
        self.opened.wait(60)
        resources = [{"name": "slow", "path": self.url + "fast.csv", "format": "csv"}]
        send(handler, json.dumps({"resources": resources}).encode(), "application/json")


def _table_spec(url: str, owner: str, dataset: str) -> dict:
    spec = example_spec(url, dataset=dataset, ownerid=owner)
    spec["inputs"][0]["parameters"] = {
        "descriptor": {"resources": [{"name": "t", "path": url, "format": "csv"}]}
    }
    spec["processing"] = []
    spec["outputs"] = [{"kind": "sqlite"}]
    return spec


# What the review sent: each within the YAML caps (1 MiB, 20,000 values), each costly.
HOSTILE_YAML = {
    # 1 MiB of one base-60 integer: read as the string it is (YAML 1.2), so not a spec.
    "base-60 integers": (
        b"x: " + b":".join([b"1"] * (512 * 1024 - 4)) + b"\n",
        "(root): 'inputs' is a required property",
    ),
    # A mapping of 5,000 keys merged 5,000 times over: 25 million copies.
    "merge keys": (
        (
            "a: &a {" + ", ".join(f"k{index}: v" for index in range(5000)) + "}\n"
            "b: {<<: [" + ", ".join(["*a"] * 5000) + "]}\n"
        ).encode(),
        "merge keys (<<) are not taken",
    ),
    "long hexadecimal": (b"x: 0x" + b"f" * 3600 + b"\n", "a number is at most"),
}


class SilentRegistry:
    """A registry that takes connections and never answers: npm waits on it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()


def _processes_naming(text: str) -> list[int]:
    """The processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in command:
                found.append(int(entry.name))
    return found


SECRET = "INTERNAL-SECRET-42"
