"""Hostile input through the test client: fuzzed specs, bodies, events and headers; rate
limits; nothing written outside the output folder.

Every fuzzed request must get a JSON answer of the documented shape with a 2xx or 4xx
status (never 5xx), and must store a revision exactly when it answers 200.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from specstore.config import NpmRegistry, configure
from tests.support.api import make_spec, post_event, stored_revisions, upload
from tests.support.fitting import NPM_DATASET_MAX, SCHEDULE_WINDOW, fit_spec
from tests.support.pipelines import example_spec
from tests.support.strategies import EVENT_PAYLOADS, FUZZ, SPEC_EXAMPLES, VALID_SPECS, broken_specs

ANSWERS = {200, 400, 401, 403, 404, 413, 415}


def _documented_shape(response) -> dict[str, Any]:
    assert response.status_code in ANSWERS, (response.status_code, response.data[:300])
    body = response.get_json()
    assert isinstance(body, dict), response.data[:300]
    assert isinstance(body["errors"], list)
    assert all(isinstance(error, str) for error in body["errors"])
    if response.status_code == 200:
        assert body["success"] is True and body["errors"] == []
    else:
        assert body["success"] is False and body["id"] is None and body["errors"]
    return body


def _encode(spec: Any) -> bytes:
    return json.dumps(spec, ensure_ascii=True).encode("ascii")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(FUZZ, max_examples=SPEC_EXAMPLES)
@given(spec=VALID_SPECS)
def test_fuzz_every_valid_spec_is_stored(make_app, keypair, spec):
    # NUL cannot be stored (PostgreSQL's JSON refuses it): specstore refuses it in any
    # string, a rule the schema does not spell out.
    assume("\\u0000" not in json.dumps(spec))
    app = make_app(
        engines={"WAREHOUSE": "sqlite://"},
        npm_registries={"PUBLIC": NpmRegistry("http://npm.test/", "t", scope="hub")},
        schedule_min_interval=SCHEDULE_WINDOW[0],
    )
    fit_spec(spec)
    before = len(stored_revisions(app))
    response = upload(app.test_client(), _encode(spec), keypair.token("alice"), "application/json")
    body = _documented_shape(response)
    assert response.status_code == 200, body
    assert len(stored_revisions(app)) == before + 1


def test_the_longest_names_fitted_to_an_npm_output_are_stored(make_app, keypair):
    # The fuzzers' fitting (tests/support/fitting.py) keeps npm package names within
    # npm's limit, against the server's own check.
    app = make_app(npm_registries={"PUBLIC": NpmRegistry("http://npm.test/", "t", scope="hub")})
    spec = make_spec(dataset="Z" * 128)
    spec["outputs"] = [{"kind": "npm", "parameters": {"credentials": "public"}}]
    refused = upload(app.test_client(), copy.deepcopy(spec), keypair.token("alice"))
    assert refused.status_code == 400
    assert "longer than 214 characters" in refused.get_json()["errors"][0]
    fit_spec(spec)
    response = upload(app.test_client(), spec, keypair.token("alice"))
    assert response.status_code == 200, response.get_json()
    assert stored_revisions(app) == [("alice", "Z" * NPM_DATASET_MAX, 1, "LOADED")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(FUZZ, max_examples=SPEC_EXAMPLES)
@given(spec=broken_specs())
def test_fuzz_broken_specs_never_5xx_and_store_only_on_200(app, keypair, spec):
    if isinstance(spec, dict) and isinstance(spec.get("meta"), dict):
        spec["meta"].setdefault("ownerid", "alice")
    before = len(stored_revisions(app))
    try:
        body = _encode(spec)
    except (TypeError, ValueError, UnicodeEncodeError):
        body = repr(spec).encode("utf-8", "surrogatepass")
    response = upload(app.test_client(), body, keypair.token("alice"), "application/json")
    _documented_shape(response)
    after = len(stored_revisions(app))
    assert after == before + (response.status_code == 200)


@FUZZ
@given(
    body=st.binary(max_size=2048),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/yaml",
            "text/yaml",
            "text/plain",
            "",
            "application/x-yaml",
        ]
    ),
)
def test_fuzz_raw_bodies(app, keypair, body, content_type):
    before = len(stored_revisions(app))
    response = upload(app.test_client(), body, keypair.token("alice"), content_type)
    _documented_shape(response)
    assert len(stored_revisions(app)) == before + (response.status_code == 200)


@FUZZ
@given(payload=EVENT_PAYLOADS)
def test_fuzz_update_payloads(app, keypair, payload):
    client = app.test_client()
    if not stored_revisions(app):
        upload(client, example_spec("http://files.test/"), keypair.token("alice"))
    response = client.post(
        "/source/update?token=test-hook-token",
        data=json.dumps(payload, default=str).encode("utf-8", "surrogatepass"),
        content_type="application/json",
    )
    _documented_shape(response)
    assert len(stored_revisions(app)) == 1


@FUZZ
@given(
    token=st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=255), min_size=1, max_size=600
    ),
    extra=st.dictionaries(
        st.sampled_from(["X-Hook-Token", "Content-Length-Extra", "Origin", "X-Request-ID"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=50),
        max_size=3,
    ),
)
def test_fuzz_headers(app, token, extra):
    client = app.test_client()
    response = client.post(
        "/source/upload",
        data=_encode(example_spec("http://files.test/")),
        content_type="application/json",
        headers={"Auth-Token": token, **extra},
    )
    assert _documented_shape(response) and response.status_code in (401, 403)
    assert stored_revisions(app) == []
    event = client.post(
        "/source/update",
        json={"pipeline_id": "alice/gdp", "event": "start"},
        headers={"X-Hook-Token": token},
    )
    assert event.status_code in (401, 403)
    _documented_shape(event)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"meta": {"version": 1e999}}', "application/json"),
        (b'{"meta": {"version": ' + b"9" * 5000 + b"}}", "application/json"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "application/json"),
        (b"a: " + b"[" * 100_000, "application/yaml"),
        (b"- " * 50_000 + b"x", "application/yaml"),
        ("meta: \U0001f600\x00".encode(), "application/yaml"),
        (b"\xef\xbb\xbf\xff\xfe", "application/json"),
        (b"&a [*a]", "application/yaml"),
    ],
)
def test_pathological_documents_are_400(app, keypair, body, content_type):
    response = upload(app.test_client(), body, keypair.token("alice"), content_type)
    assert response.status_code == 400
    _documented_shape(response)
    assert stored_revisions(app) == []


def test_every_route_limits_the_body_size(make_app, keypair):
    app = make_app(max_content_length=1024)
    client = app.test_client()
    big = {"pipeline_id": "alice/gdp", "event": "progress", "log": ["x" * 2048]}
    assert post_event(client, big).status_code == 413
    response = client.post("/source/upload", data=b"x" * 4096, content_type="application/json")
    assert response.status_code == 413
    _documented_shape(response)


def test_uploads_past_the_rate_limit_are_429_with_retry_after(make_app, keypair):
    app = make_app(upload_rate_limit="3/minute")
    client = app.test_client()
    answers = [
        upload(client, example_spec("http://files.test/"), keypair.token("alice")) for _ in range(5)
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    message = "too many uploads: at most 3 per 1 minute for one user, try again later"
    assert refused.get_json() == {
        "success": False,
        "id": None,
        "errors": [message],
        "error": {"status": 429, "message": message},
    }
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert [row[2] for row in stored_revisions(app)] == [1, 2, 3]
    # Per user: another user's uploads are counted apart.
    other = make_spec(ownerid="bob")
    assert upload(client, other, keypair.token("bob")).status_code == 200
    # Reads are not limited.
    assert all(client.get("/source/alice/gdp/status").status_code == 200 for _ in range(10))


def test_uploads_are_limited_by_default(make_app, keypair):
    assert configure({}).upload_rate_limit == "120/minute"
    assert configure({"UPLOAD_RATE_LIMIT": "off"}).upload_rate_limit is None
    app = make_app(upload_rate_limit=configure({}).upload_rate_limit)
    client = app.test_client()
    token = keypair.token("alice")
    answers = [upload(client, make_spec(), token).status_code for _ in range(121)]
    assert answers == [200] * 120 + [429]


def test_without_a_rate_limit_uploads_are_not_counted(make_app, keypair):
    app = make_app()
    client = app.test_client()
    for _ in range(5):
        response = upload(client, example_spec("http://files.test/"), keypair.token("alice"))
        assert response.status_code == 200
        assert "Retry-After" not in response.headers


# -- where specstore fetches from ------------------------------------------------------------


def test_inputs_on_hosts_outside_the_allow_list_are_400(make_app, keypair):
    app = make_app(input_url_allow=("*.data.test", "files.test"))
    spec = example_spec("http://files.test/")
    spec["inputs"][0]["url"] = "http://169.254.169.254/latest/meta-data"
    spec["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = "http://localhost:5432/x.csv"
    response = upload(app.test_client(), spec, keypair.token("alice"))

    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "inputs[0].url: the host '169.254.169.254' is not allowed (INPUT_URL_ALLOW)",
        "inputs[0].parameters['resource-mapping']['gdp']: the host 'localhost' is not allowed "
        "(INPUT_URL_ALLOW)",
    ]
    assert stored_revisions(app) == []
    allowed = example_spec("http://files.test/")
    allowed["inputs"][0]["url"] = "https://mirror.data.test/datapackage.json"
    assert upload(app.test_client(), allowed, keypair.token("alice")).status_code == 200


# -- where specstore writes -------------------------------------------------------------------


TRAVERSALS = ["../../escape", "..", "/tmp/escape", "a/../../b", "..\\escape", "%2e%2e/escape"]


@pytest.mark.parametrize("value", TRAVERSALS)
@pytest.mark.parametrize(
    "where",
    ["ownerid", "dataset", "out-file", "processing output", "rdbms engine", "resource-mapping key"],
)
def test_no_spec_string_that_reaches_a_path_can_leave_the_output_folder(
    make_app, keypair, tmp_path, where, value
):
    app = make_app(dpp_pipelines_dir=str(tmp_path / "dpp"))
    spec = example_spec("http://files.test/")
    owner = "alice"
    if where == "ownerid":
        spec["meta"]["ownerid"] = owner = value
    elif where == "dataset":
        spec["meta"]["dataset"] = value
    elif where == "out-file":
        spec["outputs"][1]["parameters"]["out-file"] = value
    elif where == "processing output":
        spec["processing"][0]["output"] = value
    elif where == "rdbms engine":
        spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": value}})
    else:
        spec["inputs"][0]["parameters"]["resource-mapping"] = {value: "http://files.test/x.csv"}
    response = upload(app.test_client(), spec, keypair.token(owner))

    if where == "resource-mapping key":
        # A mapping key is only compared with resource names, never used as a path.
        assert response.status_code == 200
    else:
        assert response.status_code == 400, response.get_json()
        assert stored_revisions(app) == []
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    assert all(path.startswith(("dpp", "output")) for path in written), written
