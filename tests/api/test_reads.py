"""Reading the registry: status, info, revisions, listings, the schema, and who may see what."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest

from specstore.validation import SPEC_SCHEMA, load_schema
from specstore.web.representations import failure
from tests.support.api import make_spec, post_event, upload


def _iso(text):
    moment = dt.datetime.fromisoformat(text)
    assert moment.tzinfo is not None
    return moment


def test_status_of_a_new_dataset(client, keypair):
    upload(client, make_spec(), keypair.token("alice"))
    response = client.get("/source/alice/gdp/status")

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"state", "trigger", "errors", "logs", "modified", "stats"}
    assert body["state"] == "LOADED"
    assert body["errors"] == []
    assert body["logs"] == []
    assert body["stats"] == {}
    assert abs((_iso(body["modified"]) - dt.datetime.now(dt.UTC)).total_seconds()) < 60


@pytest.mark.parametrize("route", ["status", "info", "latest", "successful", "1"])
def test_an_unknown_dataset_is_404_json(client, route):
    response = client.get(f"/source/alice/nothing/{route}")
    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False and body["id"] is None
    assert body["errors"]


@pytest.mark.parametrize(
    "name", ['gd"p', "gd'p", "gd\\p", "$.gdp", "gdp[0]", "gdp%22", "..", "gdp\u2028"]
)
def test_info_of_a_name_no_dataset_may_have_is_404(client, keypair, name):
    """The dataset's name from the path also keys its main pipeline in the statement (a
    JSON path, on SQLite): whatever it holds, no dataset has it, and nothing else is read."""
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    response = client.get(f"/source/alice/{quote(name, safe='')}/info")
    assert response.status_code == 404
    assert response.get_json()["errors"] == [f"no dataset alice/{name}"]


def test_info_is_the_seed_record_from_specstores_own_records(client, keypair):
    spec = make_spec()
    upload(client, spec, keypair.token("alice"))
    body = client.get("/source/alice/gdp/info").get_json()

    assert body["id"] == "./alice/gdp"
    assert body["flow_id"] == "alice/gdp/1"
    assert body["revision"] == 1
    assert body["state"] == "LOADED"
    assert body["message"] == "Loaded"
    assert body["success"] is None
    assert body["error_log"] == []
    assert body["reason"] == ""
    assert body["stats"] == {}
    assert body["trigger"] == "dirty-task"
    assert body["queued"] is body["started"] is body["ended"] is body["last_success"] is None
    assert body["pipeline"] is None
    # The spec once whole; as its source, without what its input carries.
    assert body["spec_contents"] == spec
    assert body["source"] == {
        **spec,
        "inputs": [{"kind": "datapackage", "url": spec["inputs"][0]["url"]}],
    }
    assert body["source"]["meta"]["owner"] == "Alice"
    _iso(body["spec_modified"])


def test_the_spec_is_answered_as_uploaded_whatever_its_values(client, keypair):
    """info and the revision routes send the spec as the database keeps it (JSON text,
    not decoded and encoded again): every value reads back the same, and each body is
    one JSON object with each member once."""
    spec = make_spec(owner="Zoë Ünal ✓ 数据")
    spec["inputs"][0]["parameters"] = {
        "descriptor": {
            "name": "values",
            "big": 2**70,
            "negative": -(2**63) - 1,
            "small": 1e-7,
            "half": 0.5,
            "flags": [True, False, None],
            "quote": 'a "quoted" \\ back\nslash \u2028',
            "nested": {"": {"deep": [[[]]]}},
            "resources": [{"name": "gdp", "path": "gdp.csv"}],
        }
    }
    uploaded = upload(client, spec, keypair.token("alice"))
    assert uploaded.status_code == 200, uploaded.get_json()
    for path in ("/source/alice/gdp/info", "/source/alice/gdp/latest", "/source/alice/gdp/1"):
        response = client.get(path)
        assert response.status_code == 200
        body = json.loads(response.data, object_pairs_hook=_one_of_each)
        assert body["spec_contents"] == spec
        assert type(body["spec_contents"]["inputs"][0]["parameters"]["descriptor"]["big"]) is int
        if "source" in body:
            assert body["source"]["meta"] == spec["meta"]
            assert "parameters" not in body["source"]["inputs"][0]
        etag = response.headers["ETag"]
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304


def _one_of_each(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


def test_info_and_status_follow_the_newest_revision(client, keypair):
    upload(client, make_spec(owner="Alice"), keypair.token("alice"))
    post_event(client, {"pipeline_id": "./alice/gdp", "event": "finish", "success": True})
    upload(client, make_spec(owner="Alice Smith"), keypair.token("alice"))

    assert client.get("/source/alice/gdp/status").get_json()["state"] == "LOADED"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["revision"] == 2
    assert info["source"]["meta"]["owner"] == "Alice Smith"
    assert info["last_success"] is not None  # from revision 1


def test_revisions_by_number_latest_and_successful(client, keypair):
    token = keypair.token("alice")
    for owner in ("one", "two", "three"):
        upload(client, make_spec(owner=owner), token)
    assert client.get("/source/alice/gdp/successful").status_code == 404
    post_event(
        client, {"pipeline_id": "./alice/gdp", "event": "finish", "success": True}, revision=2
    )
    post_event(
        client, {"pipeline_id": "./alice/gdp", "event": "finish", "success": False}, revision=3
    )

    second = client.get("/source/alice/gdp/2").get_json()
    assert set(second) == {
        "id", "revision", "trigger", "state", "spec_contents", "created", "modified", "errors",
        "stats",
    }  # fmt: skip
    assert second["id"] == "alice/gdp/2"
    assert second["revision"] == 2
    assert second["state"] == "SUCCEEDED"
    assert second["spec_contents"]["meta"]["owner"] == "two"
    assert _iso(second["created"]) <= _iso(second["modified"])

    assert client.get("/source/alice/gdp/latest").get_json()["revision"] == 3
    assert client.get("/source/alice/gdp/latest").get_json()["state"] == "FAILED"
    assert client.get("/source/alice/gdp/successful").get_json()["revision"] == 2
    assert client.get("/source/alice/gdp/1").get_json()["state"] == "LOADED"

    missing = client.get("/source/alice/gdp/4")
    assert missing.status_code == 404
    assert missing.get_json()["errors"] == ["no revision 4 of alice/gdp"]
    assert client.get("/source/alice/gdp/newest").status_code == 404


def test_the_listing_is_newest_first_and_paged(client, keypair):
    token = keypair.token("alice")
    for name in ("a", "b", "c", "d"):
        upload(client, make_spec(dataset=name), token)
    upload(client, make_spec(dataset="b"), token)  # b changes last
    upload(client, make_spec(ownerid="bob", dataset="x"), keypair.token("bob"))

    body = client.get("/source/alice").get_json()
    assert body["total"] == 4
    assert [item["dataset"] for item in body["datasets"]] == ["b", "d", "c", "a"]
    first = body["datasets"][0]
    assert set(first) == {"id", "dataset", "revision", "state", "modified"}
    assert first["id"] == "alice/b" and first["revision"] == 2 and first["state"] == "LOADED"

    page = client.get("/source/alice?limit=2&offset=1").get_json()
    assert [item["dataset"] for item in page["datasets"]] == ["d", "c"]
    assert page["total"] == 4
    assert client.get("/source/nobody").get_json() == {"datasets": [], "total": 0}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: must be between 1 and 500"),
        ("limit=501", "limit: must be between 1 and 500"),
        ("limit=ten", "limit and offset must be integers"),
        ("offset=-1", "offset: must be between 0 and 2147483647"),
    ],
)
def test_bad_listing_parameters_are_400(client, query, message):
    response = client.get(f"/source/alice?{query}")
    assert response.status_code == 400
    assert response.get_json() == failure(response.status_code, [message])


def test_private_datasets_are_only_for_their_owner(client, keypair, other_keypair):
    upload(client, make_spec(dataset="secret", findability="private"), keypair.token("alice"))
    owner = {"Auth-Token": keypair.token("alice")}

    for route in ("status", "info", "latest", "1"):
        assert client.get(f"/source/alice/secret/{route}").status_code == 404
        stranger = {"Auth-Token": keypair.token("bob")}
        assert client.get(f"/source/alice/secret/{route}", headers=stranger).status_code == 404
        assert client.get(f"/source/alice/secret/{route}", headers=owner).status_code == 200

    assert client.get("/source/alice").get_json() == {"datasets": [], "total": 0}
    assert client.get("/source/alice", headers=owner).get_json()["total"] == 1
    forged = {"Auth-Token": other_keypair.token("alice")}
    assert client.get("/source/alice/secret/status", headers=forged).status_code == 401


def test_unlisted_datasets_are_reachable_but_not_listed(client, keypair):
    upload(client, make_spec(dataset="quiet", findability="unlisted"), keypair.token("alice"))
    upload(client, make_spec(dataset="loud"), keypair.token("alice"))

    assert client.get("/source/alice/quiet/status").status_code == 200
    listed = client.get("/source/alice").get_json()
    assert [item["dataset"] for item in listed["datasets"]] == ["loud"]
    assert listed["total"] == 1
    owner = {"Auth-Token": keypair.token("alice")}
    assert client.get("/source/alice", headers=owner).get_json()["total"] == 2


def test_findability_follows_the_newest_revision(client, keypair):
    upload(client, make_spec(findability="published"), keypair.token("alice"))
    upload(client, make_spec(findability="private"), keypair.token("alice"))
    assert client.get("/source/alice/gdp/status").status_code == 404


def test_the_schema_route_serves_the_validators_schema(client):
    response = client.get("/source/schema")
    assert response.status_code == 200
    assert response.mimetype == "application/schema+json"
    assert json.loads(response.data) == load_schema(SPEC_SCHEMA)


def test_cors_on_every_route(client, keypair):
    upload(client, make_spec(), keypair.token("alice"))
    origin = {"Origin": "https://datahub.example"}
    for route in ("/source/alice/gdp/status", "/source/alice", "/source/schema", "/nothing"):
        response = client.get(route, headers=origin)
        assert response.headers["Access-Control-Allow-Origin"] == origin["Origin"], route
        # Not a browser's cross-origin request: no CORS headers (reads vary by Origin).
        assert "Access-Control-Allow-Origin" not in client.get(route).headers, route

    preflight = client.options(
        "/source/upload",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Auth-Token, Content-Type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == origin["Origin"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "auth-token" in allowed and "content-type" in allowed


def test_unknown_routes_and_methods_are_json(client):
    missing = client.get("/nothing/here")
    assert missing.status_code == 404
    assert missing.get_json()["success"] is False
    assert missing.get_json()["errors"]

    wrong = client.delete("/source/upload")
    assert wrong.status_code == 405
    assert wrong.get_json()["success"] is False
    assert "POST" in wrong.headers["Allow"]


@pytest.mark.parametrize(
    "route",
    [
        "/source/alice/gdp/status",
        "/source/alice/gdp/info",
        "/source/alice/gdp/1",
        "/source/alice/gdp/latest",
        "/source/alice",
    ],
)
def test_reads_answer_304_to_the_etag_of_an_unchanged_answer(client, keypair, route):
    """A front end polling every 2 s sends back the ETag it was given: while nothing
    changed, 304 with no body; once the revision moves on, 200 with the new answer."""
    upload(client, make_spec(), keypair.token("alice"))
    first = client.get(route)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.headers["Vary"] == "Auth-Token, Origin"

    again = client.get(route, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == etag

    # The other conditions are evaluated too: a write-style precondition that fails is 412.
    assert client.get(route, headers={"If-Match": etag}).status_code == 200
    failed = client.get(route, headers={"If-Match": '"another"'})
    assert failed.status_code == 412

    post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"})
    changed = client.get(route, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.get_json() != first.get_json()
    assert changed.get_json() == client.get(route).get_json()


def test_the_owners_etag_tells_a_stranger_nothing_about_a_private_dataset(
    client, keypair, other_keypair
):
    upload(client, make_spec(findability="private"), keypair.token("alice"))
    owner = client.get("/source/alice/gdp/status", headers={"Auth-Token": keypair.token("alice")})
    assert owner.status_code == 200
    stranger = client.get(
        "/source/alice/gdp/status", headers={"If-None-Match": owner.headers["ETag"]}
    )
    assert stranger.status_code == 404
    assert stranger.get_json()["errors"] == ["no dataset alice/gdp"]
    assert "ETag" not in stranger.headers
