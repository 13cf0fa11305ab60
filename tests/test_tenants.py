"""Many owners on one specstore: nothing one owner does touches another's tables, events
or data, or starves their runs. Each finding of the review, reproduced as it was
found, and the safe outcome asserted; on both engines where it applies.

(Forged events, with another revision's or another owner's credential: see
tests/test_update.py. Addresses and archives as the fetch policy sees them:
tests/test_fetch.py.)
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from datapackage_pipelines_specstore.fetch import FetchError, check_unpacked_size
from datapackage_pipelines_specstore.steps import MAX_TABLE_NAME_BYTES, table_name
from sqlalchemy import event, select

from specstore.config import ConfigError, configure
from specstore.db import Database
from specstore.models import Revision
from tests.conftest import database_of, make_spec, stored_revisions, upload
from tests.support.net import RouteServer, StaticFiles, send
from tests.support.pipelines import (
    HANDED_OVER,
    database_tables,
    example_spec,
    pipelines_for_dpp,
    wait_for,
)
from tests.test_dpp import _get, _specstore_for, _upload, dpp  # noqa: F401 (a fixture)
from tests.test_pipelines import GDP_ROWS, POPULATION_ROWS, warehouse  # noqa: F401

SECRET = "INTERNAL-SECRET-42"


def _status(client, owner="alice", dataset="gdp", token=None):
    headers = {"Auth-Token": token} if token else {}
    return lambda: client.get(f"/source/{owner}/{dataset}/status", headers=headers).get_json()


def _error_log(client, owner="alice", dataset="gdp"):
    return client.get(f"/source/{owner}/{dataset}/info").get_json()["error_log"]


# -- 1. rdbms outputs: every table the owner's and the dataset's own --------------------------


def test_table_names_are_the_owners_and_the_datasets_and_stay_unique_when_long():
    assert table_name("alice", "gdp", "gdp") == "alice/gdp/gdp"
    owner = "0c0d7a1b2c3d4e5f60718293a4b5c6d7"  # a user id as the auth service makes them
    long_ones = {table_name(owner, f"dataset-{index}-" + "x" * 60, "r") for index in range(50)}
    assert len(long_ones) == 50
    for name in long_ones:
        assert len(name.encode()) <= MAX_TABLE_NAME_BYTES
        assert name.startswith(owner + "/") and re.search(r"~[0-9a-f]{16}$", name)
    # A short name never holds "~": no long name can be another's short one.
    assert "~" not in table_name("a", "b", "c-d_e.f")


def test_an_rdbms_output_writes_only_the_owners_own_tables(
    make_app,
    keypair,
    example_data,
    warehouse,  # noqa: F811
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
        assert wait_for(_status(client, owner))["state"] == "SUCCEEDED"

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


def test_a_connection_may_be_open_to_named_owners_only(make_app, keypair):
    settings = configure(
        {"ENGINE_WAREHOUSE": "postgresql://db/warehouse", "ENGINE_WAREHOUSE_OWNERS": "alice, bob"}
    )
    assert settings.engines == {"WAREHOUSE": "postgresql+psycopg2://db/warehouse"}
    app = make_app(engines=settings.engines, engine_owners=settings.engine_owners)
    client = app.test_client()
    spec = make_spec("mallory")
    spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "warehouse"}}]
    refused = upload(client, spec, keypair.token("mallory"))
    assert refused.status_code == 400
    assert refused.get_json()["errors"] == [
        "outputs[0].parameters.engine: the database connection 'warehouse' is not open to "
        "mallory's datasets on this server (ENGINE_WAREHOUSE_OWNERS)"
    ]
    assert stored_revisions(app) == []
    spec["meta"]["ownerid"] = "alice"
    assert upload(client, spec, keypair.token("alice")).status_code == 200


def test_no_connection_may_be_specstores_own_database(tmp_path):
    own = f"sqlite:///{tmp_path}/specstore.db"
    with pytest.raises(ConfigError, match="ENGINE_MINE: it is specstore's own database"):
        configure(
            {
                "DATABASE_URL": own,
                "ENGINE_MINE": f"sqlite:///{tmp_path}/../{tmp_path.name}/specstore.db",
            }
        )
    with pytest.raises(ConfigError, match="ENGINE_MINE: it is specstore's own database"):
        configure(
            {
                "DATABASE_URL": "postgresql://u:p@db:5432/specstore",
                "ENGINE_MINE": "postgres://other:secret@db:5432/specstore",
            }
        )
    with pytest.raises(ConfigError, match="ENGINE_NONE_OWNERS: there is no ENGINE_NONE"):
        configure({"ENGINE_NONE_OWNERS": "alice"})
    configure({"DATABASE_URL": own, "ENGINE_OTHER": f"sqlite:///{tmp_path}/warehouse.db"})


# -- 2. what a source served never reaches a public error --------------------------------------


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


EXPECTED_TYPE_ERROR = (
    "resource values, data row 2, field 'amount': a text of 18 characters is not a valid integer"
)


def test_a_value_that_fails_its_type_is_described_not_quoted(make_app, keypair, internal_answer):
    app = make_app(runner_workers=1)
    client = app.test_client()
    assert upload(client, internal_answer, keypair.token("alice")).status_code == 200
    status = wait_for(_status(client, dataset="values"))
    assert status["state"] == "FAILED"
    assert status["errors"] == [EXPECTED_TYPE_ERROR]
    for path in ("status", "info", "1", "latest"):
        assert SECRET not in client.get(f"/source/alice/values/{path}").text, path
    assert SECRET not in client.get("/datasets/alice/values").text


def test_on_dpp_a_value_that_fails_its_type_is_described_not_quoted(
    dpp,  # noqa: F811
    start_server,
    keypair,
    internal_answer,
    tmp_path,
):
    server = _specstore_for(dpp, start_server, keypair, tmp_path / "output")
    assert _upload(server, keypair, internal_answer).status_code == 200
    wait_for(lambda: _get(server, "/source/alice/values/status"), states=HANDED_OVER)
    ran = dpp.run("alice/values")
    assert ran.returncode != 0
    status = wait_for(lambda: _get(server, "/source/alice/values/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert status["errors"] == [EXPECTED_TYPE_ERROR]
    for path in ("status", "info"):
        assert (
            SECRET not in requests.get(f"{server.url}/source/alice/values/{path}", timeout=10).text
        )


# -- 3. the address every connection goes to ------------------------------------------------------


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
    status = wait_for(_status(client, dataset="reach"))
    assert status["state"] == "FAILED"
    assert re.fullmatch(
        r"resource secret: the host '[^']+' resolves to a (loopback|private) address, which "
        r"inputs may not be fetched from \(INPUT_ADDRESS_ALLOW\)",
        status["errors"][0],
    ), status["errors"]
    assert internal.requests == []


def test_on_dpp_a_name_that_resolves_to_an_internal_address_is_not_fetched(
    dpp,  # noqa: F811
    start_server,
    keypair,
    internal,
    tmp_path,
):
    server = _specstore_for(dpp, start_server, keypair, tmp_path / "output", INPUT_ADDRESS_ALLOW="")
    assert _upload(server, keypair, _reaching_internal(internal)).status_code == 200
    wait_for(lambda: _get(server, "/source/alice/reach/status"), states=HANDED_OVER)
    assert dpp.run("alice/reach").returncode != 0
    status = wait_for(lambda: _get(server, "/source/alice/reach/status"), timeout=30)
    assert status["state"] == "FAILED"
    assert "resolves to a" in status["errors"][0] and "(INPUT_ADDRESS_ALLOW)" in status["errors"][0]
    assert internal.requests == []


def test_internal_addresses_are_refused_at_upload_unless_allowed(make_app, keypair):
    """Reproduced: with nothing set, a resource could point at DPP's dashboard on
    127.0.0.1:5050 (and read the hook token back), or at the cloud's metadata service."""
    app = make_app(input_address_allow=())
    client = app.test_client()
    spec = make_spec()
    spec["inputs"][0]["url"] = "http://169.254.169.254/latest/meta-data/"
    spec["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = (
        "http://127.0.0.1:5050/api/raw/alice/gdp"
    )
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "inputs[0].url: 169.254.169.254 is a link-local address, which inputs may not be "
        "fetched from (INPUT_ADDRESS_ALLOW)",
        "inputs[0].parameters['resource-mapping']['gdp']: 127.0.0.1 is a loopback address, "
        "which inputs may not be fetched from (INPUT_ADDRESS_ALLOW)",
    ]
    assert stored_revisions(app) == []
    assert configure({}).input_address_allow == ()
    with pytest.raises(ConfigError, match="INPUT_ADDRESS_ALLOW='nowhere'"):
        configure({"INPUT_ADDRESS_ALLOW": "nowhere"})
    with pytest.raises(ConfigError, match="INPUT_PORTS='http'"):
        configure({"INPUT_PORTS": "http"})


# -- 4. parsing a request is bounded in CPU by construction ------------------------------------


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


@pytest.mark.parametrize("engine", ["embedded", "dpp"])
def test_a_carried_data_package_is_bounded_in_resources(make_app, keypair, tmp_path, engine):
    """Reproduced on DPP: 20,000 resources (818 KB of JSON) were planned inside the
    request, 13.8 s and an 8.2 MB pipeline file. Past MAX_RESOURCES: 400, nothing stored
    or written, and a plan's steps do not grow with the resources."""
    overrides = {"dpp_pipelines_dir": str(tmp_path / "dpp")} if engine == "dpp" else {}
    app = make_app(**overrides)
    client = app.test_client()
    spec = make_spec()
    spec["processing"] = []
    resources = [{"name": f"r{index}", "path": f"r{index}.csv"} for index in range(20_000)]
    spec["inputs"][0]["parameters"] = {"descriptor": {"resources": resources}}
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "the data package has 20000 resources, more than this server takes in one dataset "
        "(1000, MAX_RESOURCES)"
    ]
    assert stored_revisions(app) == []
    assert not list(tmp_path.rglob("*.yaml"))

    spec["inputs"][0]["parameters"]["descriptor"]["resources"] = resources[:1000]
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    if engine == "dpp":
        pipeline = pipelines_for_dpp(tmp_path / "dpp")["gdp"]["pipeline"]
        # DPP runs each step as a process: as many as for a package of one resource.
        assert [step["run"] for step in pipeline] == [
            "specstore.stage",
            "specstore.load",
            "update_package",
            "specstore.dump_to_sql",
            "dump_to_path",
            "specstore.package",
            "specstore.publish",
        ]
        assert len(pipeline[1]["parameters"]["resources"]) == 1000


# -- 5. fairness ------------------------------------------------------------------------------


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
        wait_for(_status(client, "mallory", "drip-1"), states=("RUNNING",))
        spec = _table_spec(gate.url + "fast.csv", "alice", "quick")
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        try:
            assert wait_for(_status(client, "alice", "quick"))["state"] == "SUCCEEDED"
            states = {
                name: _status(client, "mallory", name)()["state"] for name in ("drip-1", "drip-2")
            }
            assert states == {"drip-1": "RUNNING", "drip-2": "REGISTERED"}
        finally:
            gate.opened.set()
        for name in ("drip-1", "drip-2"):
            assert wait_for(_status(client, "mallory", name))["state"] == "SUCCEEDED"


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
            assert wait_for(_status(client, dataset="quick"), states=HANDED_OVER)["state"] == (
                "REGISTERED"
            )
            waiting = [row for row in stored_revisions(app) if row[0] == "mallory"]
            assert [state for *_, state in waiting] == ["LOADED"] * 4
        finally:
            gate.opened.set()
        for index in range(4):
            assert wait_for(_status(client, "mallory", f"slow-{index}"), states=HANDED_OVER)


def test_schedules_are_limited_per_owner(make_app, keypair):
    app = make_app(schedules_per_owner=2)
    client = app.test_client()
    token = keypair.token("alice")
    for dataset in ("one", "two"):
        assert upload(client, make_spec(dataset=dataset), token).status_code == 200
    refused = upload(client, make_spec(dataset="three"), token)
    assert refused.status_code == 400
    assert refused.get_json()["errors"] == [
        "schedule: alice has 2 datasets with a schedule already, the most this server runs "
        "for one owner (SCHEDULES_PER_OWNER): upload one of them without its schedule first"
    ]
    assert {row[1] for row in stored_revisions(app)} == {"one", "two"}
    # A scheduled dataset's next revision, a dataset without one, another owner: as ever.
    assert upload(client, make_spec(dataset="one"), token).status_code == 200
    unscheduled = make_spec(dataset="three")
    del unscheduled["schedule"]
    assert upload(client, unscheduled, token).status_code == 200
    assert upload(client, make_spec("bob", "one"), keypair.token("bob")).status_code == 200
    # Dropping one schedule makes room.
    two = make_spec(dataset="two")
    del two["schedule"]
    assert upload(client, two, token).status_code == 200
    assert upload(client, make_spec(dataset="three"), token).status_code == 200


def test_bytes_of_specs_stored_are_limited_per_owner(make_app, keypair):
    """Reproduced: three 15 MB specs grew the database by 47 MB in 1.5 s."""
    app = make_app(spec_bytes_limit="1MiB/hour")
    client = app.test_client()
    spec = make_spec()
    spec["inputs"][0]["parameters"]["descriptor"] = {"readme": "x" * 400_000}
    token = keypair.token("alice")
    assert [upload(client, spec, token).status_code for _ in range(2)] == [200, 200]
    refused = upload(client, spec, token)
    assert refused.status_code == 429
    assert refused.get_json()["errors"] == [
        "too many bytes of specs: at most 1MiB per hour for one owner (SPEC_BYTES_LIMIT), "
        "try again later"
    ]
    assert int(refused.headers["Retry-After"]) > 0
    assert len(stored_revisions(app)) == 2
    assert upload(client, make_spec("bob"), keypair.token("bob")).status_code == 200
    assert configure({}).spec_bytes_limit == "64MiB/hour;256MiB/day"


def test_info_sends_a_large_spec_once(make_app, keypair):
    """Reproduced: an anonymous info of a dataset with a 15 MB spec answered 31 MB."""
    app = make_app()
    client = app.test_client()
    spec = make_spec()
    spec["inputs"][0]["parameters"]["descriptor"] = {"readme": "y" * 2_000_000}
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    info = client.get("/source/alice/gdp/info")
    assert info.status_code == 200
    assert 2_000_000 < len(info.data) < 2_100_000
    body = info.get_json()
    assert body["spec_contents"] == spec
    assert "parameters" not in body["source"]["inputs"][0]


def test_a_scheduled_revision_stores_no_copy_of_its_spec(make_app, keypair):
    app = make_app(runner_workers=0)
    client = app.test_client()
    spec = make_spec()
    spec["inputs"][0]["parameters"]["descriptor"] = {"readme": "z" * 100_000}
    assert upload(client, spec, keypair.token("alice")).status_code == 200
    components = app.extensions["specstore.components"]
    registry = components.service.registry
    now = [registry.clock()]
    registry.clock = lambda: now[0]
    for _ in range(2):
        now[0] += dt.timedelta(days=2)
        assert len(registry.fire_schedules()) == 1
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Revision.revision, Revision.spec.is_(None), Revision.spec_from).order_by(
                Revision.revision
            )
        ).all()
    assert [tuple(row) for row in rows] == [(1, False, None), (2, True, 1), (3, True, 1)]
    for number in (2, 3):
        answer = client.get(f"/source/alice/gdp/{number}").get_json()
        assert answer["trigger"] == "scheduled" and answer["spec_contents"] == spec
    assert client.get("/source/alice/gdp/info").get_json()["spec_contents"] == spec


# -- 6. leftovers of earlier findings -----------------------------------------------------------


def _with_junk(archive: bytes) -> bytes:
    """Four bytes before a zip: zipfile and openpyxl open it all the same."""
    return b"JUNK" + archive


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_behind_other_bytes_is_measured_all_the_same(tmp_path):
    """Reproduced: four junk bytes before a zip skipped the unpacked-size check (a 20 MB
    extract under a 2 MB cap)."""
    bomb = tmp_path / "bomb.csv"
    bomb.write_bytes(_with_junk(_zip({"bomb.csv": b"0" * 3_000_000})))
    with zipfile.ZipFile(bomb) as opened:  # what reads it after the check
        assert opened.namelist() == ["bomb.csv"]
    with pytest.raises(FetchError, match="unpacks to more than 2000000 bytes"):
        check_unpacked_size(bomb, 2_000_000, "bomb.csv")
    check_unpacked_size(bomb, 4_000_000, "bomb.csv")
    # A text that happens to hold the signature of a zip's end is no zip: it passes.
    text = tmp_path / "text.csv"
    text.write_bytes(b"a,b\n1,PK\x05\x06" + b"\0" * 18 + b"\n")
    check_unpacked_size(text, 10, "text.csv")


def test_a_zips_member_count_is_read_before_its_directory_is_parsed(tmp_path):
    """Reproduced: 400,000 entries were counted only after the whole directory was parsed
    (3 s, 184 MB). The count in the record at the zip's end refuses it first."""
    claimed = tmp_path / "many.zip"
    # An end record that says 400,000 entries (in Zip64's record: the short field is full).
    zip64_record = (
        b"PK\x06\x06"
        + (44).to_bytes(8, "little")
        + (45).to_bytes(2, "little") * 2
        + (0).to_bytes(4, "little") * 2
        + (400_000).to_bytes(8, "little") * 2
        + (30_000_000).to_bytes(8, "little")
        + (0).to_bytes(8, "little")
    )
    locator = (
        b"PK\x06\x07"
        + (0).to_bytes(4, "little")
        + (0).to_bytes(8, "little")
        + (1).to_bytes(4, "little")
    )
    end = (
        b"PK\x05\x06"
        + (0).to_bytes(2, "little") * 2
        + (0xFFFF).to_bytes(2, "little") * 2
        + (0xFFFFFFFF).to_bytes(4, "little") * 2
        + (0).to_bytes(2, "little")
    )
    claimed.write_bytes(zip64_record + locator + end)
    with pytest.raises(FetchError, match="holds more than 10000 files"):
        check_unpacked_size(claimed, 10**9, "many.zip")
    many = tmp_path / "real.zip"
    many.write_bytes(_zip({f"{index}.csv": b"" for index in range(10_001)}))
    with pytest.raises(FetchError, match="holds more than 10000 files"):
        check_unpacked_size(many, 10**9, "real.zip")


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
        status = wait_for(_status(client, dataset="merged"))
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
        status = wait_for(_status(client))
    assert status["state"] == "FAILED"
    assert status["errors"] == [
        f"the data package {served.url}datapackage.json is larger than 4000 bytes"
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
        assert wait_for(_status(client), states=(*states, "FAILED", "INVALID"))["state"] in states
    for path in ("/source/alice/gdp/status", "/source/alice/gdp/info", "/datasets/alice/gdp"):
        assert client.get(path).status_code == 200, path
    dataset = tmp_path / "output" / "alice" / "gdp"
    if engine == "embedded":
        written = json.loads((dataset / "datapackage" / "datapackage.json").read_text())
    else:  # what the plan gives the package step, for DPP to run
        written = json.loads((dataset / ".plans" / "1.json").read_text())["package"]
    assert written["title"] == "broken \ufffd text"


@pytest.mark.parametrize(
    "path",
    [
        "/source/alice%00/gdp/status",
        "/source/alice/gd%00p/info",
        "/source/alice/gdp%00/1",
        "/source/alice/gdp%0A/latest",
        "/source/.../gdp/status",
        "/datasets/alice/g%00dp",
    ],
)
def test_names_no_dataset_can_have_are_404_with_nothing_read(client, keypair, path):
    """Reproduced: NUL in a path segment was a 500 on PostgreSQL."""
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    response = client.get(path)
    assert response.status_code == 404
    if path.startswith("/source/"):
        assert response.get_json()["errors"][0].startswith("no dataset ")
    listing = client.get("/source/alice%00")
    assert listing.status_code == 200 and listing.get_json() == {"datasets": [], "total": 0}


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
    (folder / "packed.csv").write_bytes(_zip({"packed.csv": b"a,b\n1,2\n"}))
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
            name: wait_for(_status(client, dataset=name))["state"]
            for name in ("broken", "killed", "packed")
        }
        gate.opened.set()
    assert finals == {"broken": "FAILED", "killed": "FAILED", "packed": "SUCCEEDED"}
    assert "time limit" in _status(client, dataset="killed")()["errors"][0]
    assert sorted(temporary.iterdir()) == []
    output = tmp_path / "output" / "alice"
    assert sorted(str(path.relative_to(output)) for path in output.rglob(".tmp")) == []


def test_the_dashboard_lists_only_the_revisions_the_api_shows(client, keypair):
    """Reproduced: a dataset's page listed an older private revision (its number, state
    and times) that the API answers 404 for."""
    token = keypair.token("alice")
    assert upload(client, make_spec(findability="private"), token).status_code == 200
    assert upload(client, make_spec(), token).status_code == 200
    assert client.get("/source/alice/gdp/1").status_code == 404
    page = client.get("/datasets/alice/gdp").text
    assert "<tr><td>2</td>" in page
    assert "<tr><td>1</td>" not in page
    owners = client.get("/datasets/alice/gdp", query_string={"jwt": token}).text
    assert "<tr><td>2</td>" in owners and "<tr><td>1</td>" in owners


def test_a_private_dataset_costs_what_a_missing_one_does(make_app, keypair, tmp_path):
    """Reproduced: a private dataset answered about 0.15 ms faster than a missing one
    (one query fewer). Each is now one statement, whatever the revision asked for: the
    statements counted on SQLite, where each goes through SQLAlchemy's events (the same
    statements run on PostgreSQL)."""
    url = f"sqlite:///{tmp_path}/counted.db"
    Database(url).upgrade()
    app = make_app(database_url=url)
    client = app.test_client()
    private = make_spec(findability="private")
    assert upload(client, private, keypair.token("alice")).status_code == 200
    engine = database_of(app).engine
    counted: list[str] = []

    def listener(*arguments: object) -> None:
        if str(arguments[2]).lstrip().upper().startswith("SELECT"):
            counted.append(str(arguments[2]))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        for path in ("status", "info", "latest", "1", "successful"):
            answers = {}
            for dataset in ("gdp", "missing"):
                counted.clear()
                response = client.get(f"/source/alice/{dataset}/{path}")
                answers[dataset] = (response.status_code, response.get_json(), len(counted))
            assert answers["gdp"][0] == answers["missing"][0] == 404
            assert answers["gdp"][2] == answers["missing"][2] == 1, (path, answers)
    finally:
        event.remove(engine, "before_cursor_execute", listener)


# -- 7. suspected from the code, checked ----------------------------------------------------------


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


def test_an_npm_publish_does_not_outlive_a_killed_server(
    start_server, keypair, example_data, tmp_path
):
    """Suspected from the code, and so: the npm client a run starts to publish outlived
    the server killed under it. It now dies with the pipeline's process, which dies with
    the server."""
    from tests.test_npm import npm_spec

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
