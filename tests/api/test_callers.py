"""The API under hostile callers, through the test client: nothing private leaks, numbers
and names out of range are refused; on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from specstore.store.database import Database
from specstore.validation import MAX_YAML_BYTES, MAX_YAML_NODES
from tests.support.api import (
    error_body,
    hook_credential,
    make_spec,
    stored_revisions,
    upload,
)

# -- parsing: time proportional to size, with a small constant ------------------------------


def test_yaml_past_its_node_limit_is_refused_before_it_is_built(client, app, keypair):
    body = ("meta: [" + ", ".join(["1"] * (MAX_YAML_NODES + 1)) + "]").encode()
    response = upload(client, body, keypair.token("alice"), "application/yaml")
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        f"a YAML document holds at most {MAX_YAML_NODES} values: send larger specs as JSON"
    ]
    big = b"meta: [" + b"1, " * (MAX_YAML_BYTES // 3) + b"1]"
    response = upload(client, big, keypair.token("alice"), "application/yaml")
    assert response.status_code == 413
    assert response.get_json()["errors"] == [
        f"a YAML body is at most {MAX_YAML_BYTES} bytes: send larger specs as JSON"
    ]
    assert stored_revisions(app) == []


# -- bodies: whole, or 413, however they are sent ---------------------------------------------


# -- nothing private shows: hidden and missing are one answer ---------------------------------


IN_RANGE = "must be between 1 and 2147483647"
AN_INTEGER = "must be an integer between 1 and 2147483647"
ROUTES = ["status", "info", "latest", "successful", "1", "2", "3"]
HEALTH = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _answer(client, owner: str, dataset: str, route: str, token: str | None = None):
    headers = {"Auth-Token": token} if token else {}
    response = client.get(f"/source/{owner}/{dataset}/{route}", headers=headers)
    return response.status_code, response.get_json()


@HEALTH
@given(
    older=st.lists(st.sampled_from(["published", "unlisted", "private"]), max_size=3),
    route=st.sampled_from(ROUTES),
    stranger=st.booleans(),
)
def test_for_strangers_a_private_dataset_is_a_missing_one(app, keypair, older, route, stranger):
    """Whatever a dataset's history, while its newest revision is private every route
    answers a stranger (anonymous, or signed in as someone else) word for word as for a
    dataset that was never uploaded."""
    client = app.test_client()
    name = f"d{len(stored_revisions(app))}"
    for findability in [*older, "private"]:
        spec = make_spec(dataset=name, findability=findability)
        assert upload(client, spec, keypair.token("alice")).status_code == 200
    token = keypair.token("mallory") if stranger else None
    private = _answer(client, "alice", name, route, token)
    missing = _answer(client, "alice", f"{name}-missing", route, token)
    assert private[0] == missing[0] == 404
    assert json.dumps(private[1]) == json.dumps(missing[1]).replace(f"{name}-missing", name)
    # Its owner sees it all.
    assert _answer(client, "alice", name, "latest", keypair.token("alice"))[0] == 200


def test_a_token_that_does_not_verify_is_401_on_every_route(make_app, keypair, other_keypair):
    client = make_app().test_client()
    upload(client, make_spec(dataset="shown"), keypair.token("alice"))
    upload(client, make_spec(dataset="hidden", findability="private"), keypair.token("alice"))
    forged = other_keypair.token("alice")
    for dataset in ("shown", "hidden", "missing"):
        for route in ROUTES:
            status, body = _answer(client, "alice", dataset, route, forged)
            assert (status, body) == (401, error_body(401, "the token's signature does not verify"))
    assert client.get("/source/alice", headers={"Auth-Token": forged}).status_code == 401


def test_an_older_private_revision_stays_private(make_app, keypair):
    app = make_app()
    client = app.test_client()
    upload(client, make_spec(findability="private"), keypair.token("alice"))
    upload(client, make_spec(findability="published"), keypair.token("alice"))
    assert client.get("/source/alice/gdp/2").status_code == 200
    assert _answer(client, "alice", "gdp", "1") == (
        404,
        error_body(404, "no revision 1 of alice/gdp"),
    )
    assert _answer(client, "alice", "gdp", "1", keypair.token("alice"))[0] == 200
    # The dataset's visibility follows its newest revision.
    assert [entry["id"] for entry in client.get("/source/alice").get_json()["datasets"]] == [
        "alice/gdp"
    ]
    upload(client, make_spec(findability="private"), keypair.token("alice"))
    assert client.get("/source/alice").get_json() == {"datasets": [], "total": 0}
    assert _answer(client, "alice", "gdp", "2") == (404, error_body(404, "no dataset alice/gdp"))


def test_existing_revisions_take_their_datasets_findability(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/old.db")
    database.upgrade("0003")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO datasets (id, owner_id, name, last_revision, findability, created, "
                "modified) VALUES (1, 'alice', 'gdp', 2, 'private', '2026-01-01', '2026-01-01')"
            )
        )
        for number in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO revisions (dataset_id, revision, spec, state, logs, errors, "
                    "stats, created, modified) VALUES (1, :number, '{}', 'SUCCEEDED', '[]', "
                    "'[]', '{}', '2026-01-01', '2026-01-01')"
                ),
                {"number": number},
            )
    database.upgrade()
    with database.engine.connect() as connection:
        found = connection.execute(text("SELECT findability FROM revisions")).scalars().all()
    database.dispose()
    assert found == ["private", "private"]


# -- numbers and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        ("GET /source/alice/gdp/9223372036854775808", "revision: must be between 1 and 2147483647"),
        ("GET /source/alice/gdp/0", "revision: must be between 1 and 2147483647"),
        (
            "GET /source/alice?offset=99999999999999999999",
            "offset: must be between 0 and 2147483647",
        ),
        (
            "POST /source/update?revision=99999999999999999999",
            "revision: must be an integer between 1 and 2147483647",
        ),
        (
            "POST /source/update?revision=abc",
            "revision: must be an integer between 1 and 2147483647",
        ),
    ],
)
def test_numbers_out_of_range_are_400(client, keypair, request_line, message):
    upload(client, make_spec(), keypair.token("alice"))
    method, path = request_line.split(" ", 1)
    if method == "GET":
        response = client.get(path)
    else:
        response = client.post(
            path,
            json={"pipeline_id": "alice/gdp", "event": "start"},
            headers={"X-Hook-Token": hook_credential("alice", "gdp", 1)},
        )
    assert (response.status_code, response.get_json()) == (400, error_body(400, message))


def test_a_revision_out_of_range_in_an_event_body_is_400(client, keypair):
    upload(client, make_spec(), keypair.token("alice"))
    response = client.post(
        "/source/update",
        json={"pipeline_id": "alice/gdp", "event": "start", "revision": 2**63},
        query_string={"dataset": "alice/gdp", "revision": 1},
        headers={"X-Hook-Token": hook_credential("alice", "gdp", 1)},
    )
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "revision: 9223372036854775808 is greater than the maximum of 2147483647"
    ]


@pytest.mark.parametrize(
    ("place", "value"),
    [("dataset", "gdp\n"), ("output", "gdp\n"), ("out-file", "x.zip\n"), ("ownerid", "alice\n")],
)
def test_names_with_a_trailing_newline_are_refused(app, keypair, place, value):
    spec = make_spec()
    owner = "alice"
    if place == "dataset":
        spec["meta"]["dataset"] = value
    elif place == "ownerid":
        spec["meta"]["ownerid"] = owner = value
    elif place == "output":
        spec["processing"][0]["output"] = value
    else:
        spec["outputs"][1]["parameters"]["out-file"] = value
    response = upload(app.test_client(), spec, keypair.token(owner))
    assert response.status_code == 400, response.get_json()
    assert stored_revisions(app) == []


def test_owner_ids_that_are_routes_are_refused_and_never_shadow_them(client, app, keypair):
    for owner in ("upload", "update", "schema", "schemas", "openapi.json"):
        response = upload(client, make_spec(ownerid=owner), keypair.token(owner))
        assert response.status_code == 400
        assert response.get_json()["errors"] == [
            f"meta.ownerid: {owner!r} is reserved: the name of one of specstore's routes under "
            "/source/"
        ]
    assert stored_revisions(app) == []
    for path in ("/source/upload", "/source/update"):
        assert client.get(path).status_code == 405
        allowed = client.options(path).headers["Allow"]
        assert {method.strip() for method in allowed.split(",")} == {"OPTIONS", "POST"}


# -- tokens' audience ---------------------------------------------------------------------------


def test_audience(make_app, keypair):
    anyone = make_app().test_client()
    for claims in ({}, {"aud": "elsewhere"}):
        token = keypair.token("alice", **claims)
        assert upload(anyone, make_spec(), token).status_code == 200
    strict = make_app(auth_audience="datahub").test_client()
    expected = {
        None: (401, "the token has no 'aud' claim"),
        "elsewhere": (401, "the token is not for this audience (AUTH_AUDIENCE)"),
        "datahub": (200, None),
    }
    for audience, (status, message) in expected.items():
        claims = {"aud": audience} if audience else {}
        response = upload(strict, make_spec(), keypair.token("alice", **claims))
        assert response.status_code == status
        if message:
            assert response.get_json()["errors"] == [message]
    assert (
        jwt.decode(keypair.token("alice", aud="x"), options={"verify_signature": False})["aud"]
        == "x"
    )


@pytest.mark.parametrize("path", ["/source/alice/gdp/abc", "/source/alice/gdp/1/more", "/nope"])
def test_a_path_no_route_matches_is_a_json_404_that_says_where_the_routes_are(client, path):
    response = client.get(path, headers={"Accept": "text/html"})
    assert (response.status_code, response.mimetype) == (404, "application/json")
    assert response.get_json()["errors"] == [
        "no such route: a revision is a number, latest or successful, and every route is "
        "described at /source/openapi.json"
    ]
