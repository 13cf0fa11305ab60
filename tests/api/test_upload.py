"""POST /source/upload: every answer, and what is (and is not) stored."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.support.api import make_spec, stored_datasets, stored_revisions, upload


def test_upload_stores_a_first_revision(client, app, keypair):
    response = upload(client, make_spec(), keypair.token("alice"))

    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "id": "alice/gdp",
        "dataset_id": "alice/gdp",
        "revision": 1,
        "flow_id": "alice/gdp/1",
        "errors": [],
    }
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


def test_every_upload_is_a_new_consecutive_revision(client, app, keypair):
    token = keypair.token("alice")
    numbers = [upload(client, make_spec(), token).get_json()["revision"] for _ in range(3)]
    other = upload(client, make_spec(dataset="cpi"), token).get_json()

    assert numbers == [1, 2, 3]
    assert other["flow_id"] == "alice/cpi/1"
    assert stored_datasets(app) == [("alice", "gdp", 3), ("alice", "cpi", 1)]


def test_the_stored_spec_is_exactly_what_was_sent_unknown_keys_included(client, keypair):
    spec = make_spec()
    spec["schedule"] = "every 2w"
    # An integer past 64 bits, a float and text beyond ASCII are kept exactly as sent.
    spec["x-custom"] = {"anything": [1, 2.5, None, True, 10**30 + 1, 1e-7, "Zürich ☃"]}
    assert upload(client, spec, keypair.token("alice")).status_code == 200

    stored = client.get("/source/alice/gdp/latest").get_json()["spec_contents"]
    assert stored == spec


@pytest.mark.parametrize("content_type", ["application/yaml", "application/x-yaml", "text/yaml"])
def test_yaml_specs_are_accepted(client, app, keypair, content_type):
    body = yaml.safe_dump(make_spec())
    response = upload(client, body, keypair.token("alice"), content_type=content_type)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["flow_id"] == "alice/gdp/1"
    assert client.get("/source/alice/gdp/latest").get_json()["spec_contents"] == make_spec()


def test_yaml_dates_are_kept_as_the_text_written(client, keypair):
    body = yaml.safe_dump(make_spec()) + "released: 2020-01-31\n"
    assert upload(client, body, keypair.token("alice"), "application/yaml").status_code == 200
    spec = client.get("/source/alice/gdp/latest").get_json()["spec_contents"]
    assert spec["released"] == "2020-01-31"


def test_the_token_may_come_as_the_jwt_query_parameter(client, app, keypair):
    response = client.post(
        "/source/upload", json=make_spec(), query_string={"jwt": keypair.token("alice")}
    )
    assert response.status_code == 200
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


def test_content_type_parameters_are_allowed(client, keypair):
    response = upload(
        client,
        json.dumps(make_spec()),
        keypair.token("alice"),
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""]
)
def test_other_content_types_are_415(client, app, keypair, content_type):
    response = upload(client, json.dumps(make_spec()), keypair.token("alice"), content_type)

    assert response.status_code == 415
    body = response.get_json()
    assert body["success"] is False and body["id"] is None
    assert "Content-Type must be one of" in body["errors"][0]
    assert stored_revisions(app) == []


def test_bodies_over_the_limit_are_413(make_app, keypair):
    app = make_app(max_content_length=2048)
    spec = make_spec()
    spec["padding"] = "x" * 4096
    response = upload(app.test_client(), spec, keypair.token("alice"))

    assert response.status_code == 413
    assert response.get_json()["success"] is False
    # The setting that says how large a body may be, named.
    assert response.get_json()["errors"] == [
        "the body is larger than 2048 bytes (MAX_CONTENT_LENGTH)"
    ]
    assert stored_revisions(app) == []


BAD_BODIES = [
    ("application/json", b"{not json", "the body is not valid JSON"),
    ("application/json", b"", "the request body is empty"),
    ("application/json", b"[1, 2]", "the spec must be an object"),
    ("application/json", b'"text"', "the spec must be an object"),
    ("application/json", b'{"meta": NaN}', "not a valid JSON number"),
    ("application/json", b'{"a": "\xff\xfe\xfa"}', "not valid UTF-8"),
    ("application/json", b'{"a": "nul\\u0000"}', "NUL"),
    ("application/json", b'{"a": ["lone \\ud800"]}', "unpaired surrogates"),
    ("application/json", b'{"nul\\u0000 in a key": 1}', "NUL"),
    ("application/json", b'{"a": [1e999]}', "not a valid JSON number"),
    ("application/json", b"[" * 5000 + b"]" * 5000, "nested deeper"),
    ("application/json", b"[" * 66 + b"]" * 66, "nested deeper"),
    ("application/yaml", b"meta: [unclosed", "not valid YAML"),
    (
        "application/yaml",
        b"meta:\n  a: 1\n b: 2\n",
        "the body is not valid YAML: did not find expected key at line 3, column 2 (while "
        "parsing a block mapping at line 1, column 1)",
    ),
    ("application/yaml", b"!!python/object/apply:os.system ['true']", "not valid YAML"),
    ("application/yaml", b"a: !!binary aGVsbG8=", "not valid YAML"),
    ("application/yaml", b"1: one\n", "keys must be strings"),
    ("application/yaml", b"x: .nan\n", "not a valid JSON number"),
]


@pytest.mark.parametrize(("content_type", "body", "message"), BAD_BODIES)
def test_unparsable_bodies_are_400(client, app, keypair, content_type, body, message):
    response = upload(client, body, keypair.token("alice"), content_type)

    assert response.status_code == 400
    payload = response.get_json()
    assert payload["success"] is False and payload["id"] is None
    assert message in payload["errors"][0]
    assert "<byte string>" not in payload["errors"][0]
    assert stored_revisions(app) == []


def test_a_yaml_alias_bomb_is_refused_quickly(client, app, keypair):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    response = upload(client, "\n".join(lines), keypair.token("alice"), "application/yaml")

    assert response.status_code == 400
    assert "more than" in response.get_json()["errors"][0]
    assert stored_revisions(app) == []


def test_a_missing_ownerid_is_400(client, app, keypair):
    spec = make_spec()
    del spec["meta"]["ownerid"]
    response = upload(client, spec, keypair.token("alice"))

    assert response.status_code == 400
    assert "meta: 'ownerid' is a required property" in response.get_json()["errors"]
    assert stored_revisions(app) == []


def test_every_schema_error_is_reported_with_its_path(client, app, keypair):
    spec = make_spec(findability="secret", version="one")
    spec["inputs"][0]["url"] = "ftp://data.example/datapackage.json"
    spec["inputs"][0]["parameters"]["resource-mapping"] = {"gdp": 7}
    spec["processing"][0]["tabulator"]["headers"] = 0
    spec["outputs"].append({"kind": "ftp"})
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "postgresql://u:p@h/db"}})
    response = upload(client, spec, keypair.token("alice"))

    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["id"] is None
    errors = body["errors"]
    expected_prefixes = [
        "inputs[0].parameters['resource-mapping'].gdp: 7 is not of type 'string'",
        "inputs[0].url: 'ftp://data.example/datapackage.json' does not match",
        "meta.findability: 'secret' is not one of ['published', 'unlisted', 'private']",
        "meta.version: 'one' is not of type 'integer'",
        "outputs[2].kind: 'ftp' is not one of ['rdbms', 'sqlite', 'npm', 'zip']",
        "outputs[3].parameters.engine: 'postgresql://u:p@h/db' does not match",
        "processing[0].tabulator.headers: 0 is not valid under any of the given schemas",
    ]
    assert len(errors) == len(expected_prefixes), errors
    for prefix in expected_prefixes:
        assert any(error.startswith(prefix) for error in errors), (prefix, errors)
    # The same reasons as one message, where the DataHub client looks for it.
    assert body["error"] == {"status": 400, "message": "\n".join(errors)}
    assert stored_revisions(app) == []


@pytest.mark.parametrize("segment", ["..", ".", "a/b", "white space", "x" * 129, "", "ü"])
def test_ownerid_and_dataset_must_be_safe_path_segments(client, app, keypair, segment):
    response = upload(client, make_spec(dataset=segment), keypair.token("alice"))

    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("meta.dataset: ")
    assert stored_revisions(app) == []


def test_exactly_one_input_is_required(client, app, keypair):
    spec = make_spec()
    spec["inputs"].append(dict(spec["inputs"][0]))
    response = upload(client, spec, keypair.token("alice"))

    assert response.status_code == 400
    (error,) = response.get_json()["errors"]
    # The value the message quotes is shortened: a spec's values may be megabytes long.
    assert error.startswith("inputs: [{'kind': 'datapackage', ") and error.endswith("] is too long")
    assert len(error) < 400
    assert stored_revisions(app) == []


def test_a_valid_token_for_another_user_is_403(client, app, keypair):
    response = upload(client, make_spec(ownerid="alice"), keypair.token("mallory"))

    assert response.status_code == 403
    assert response.get_json() == {
        "success": False,
        "id": None,
        "errors": ["the token is for user 'mallory', not for 'alice'"],
        "error": {"status": 403, "message": "the token is for user 'mallory', not for 'alice'"},
    }
    assert stored_revisions(app) == []


def test_the_owner_is_checked_before_the_schema(client, app, keypair):
    spec = make_spec(ownerid="alice", findability="secret")
    response = upload(client, spec, keypair.token("mallory"))
    assert response.status_code == 403
    assert stored_revisions(app) == []
