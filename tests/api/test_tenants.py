"""Many owners on one specstore, through the test client: one owner's connections, specs
and private datasets are nothing to another. Each finding of the review, reproduced as it
was found, and the safe outcome asserted.

(Runs: tests/system/test_tenants.py. Forged events: tests/api/test_update.py. Addresses
and archives as the fetch policy sees them: tests/unit/plugin/test_fetch.py.)
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from specstore.config import ConfigError, configure
from specstore.store.database import Database
from tests.support.api import database_of, make_spec, stored_revisions, upload
from tests.support.pipelines import (
    pipelines_for_dpp,
)


def _error_log(client, owner="alice", dataset="gdp"):
    return client.get(f"/source/{owner}/{dataset}/info").get_json()["error_log"]


# -- 1. rdbms outputs: every table the owner's and the dataset's own --------------------------


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


# -- 2. what a source served never reaches a public error --------------------------------------


# -- 3. the address every connection goes to ------------------------------------------------------


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
            "specstore.derive",
            "dump_to_path",
            "specstore.package",
            "specstore.publication",
            "specstore.publish",
        ]
        assert len(pipeline[1]["parameters"]["resources"]) == 1000


# -- 5. fairness ------------------------------------------------------------------------------


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


# -- 6. leftovers of earlier findings -----------------------------------------------------------


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
