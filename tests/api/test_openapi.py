"""The OpenAPI 3.1 document at /source/openapi.json describes every route, and the real
answers of the service (each status path the tests reach) match it, checked with openapi-core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

import specstore
from tests.support.api import hook_credential, make_spec, post_event, upload

PACKAGE = Path(specstore.__file__).parent


@pytest.fixture(scope="module")
def document():
    return json.loads((PACKAGE / "schemas" / "openapi.json").read_text())


@pytest.fixture(scope="module")
def openapi(document):
    # Relative references ("schemas/source-spec.schema.json") resolve next to the document,
    # as they do for a client that fetched it from /source/openapi.json.
    return OpenAPI.from_dict(document, base_uri=(PACKAGE / "openapi.json").as_uri())


def test_the_document_is_valid_openapi_3_1(document, client):
    validate(document, base_uri=(PACKAGE / "openapi.json").as_uri())
    assert document["openapi"].startswith("3.1")
    served = client.get("/source/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == document


def test_every_route_is_in_the_document(app, document):
    documented = set(document["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = (
            rule.rule.replace("<owner:owner_id>", "{ownerid}")
            .replace("<owner_id>", "{ownerid}")
            .replace("<dataset>", "{dataset}")
            .replace("<int:number>", "{revision}")
            .replace("<any(latest, successful):which>", "{revision}")
            .replace("<path:key>", "{key}")
        )
        if path.startswith("/source/schemas/"):
            path = "/source/schemas/{name}"
        assert path in documented, rule.rule


def _exchange(response):
    """The request and answer of a test-client call, as openapi-core reads them."""
    request = response.request
    sent = MockRequest(
        "http://localhost",
        request.method.lower(),
        request.path,
        args=dict(request.args),
        headers=dict(request.headers),
        content_type=request.mimetype or "application/json",
    )
    answer = MockResponse(
        response.get_data(),
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.mimetype,
    )
    return sent, answer


def test_real_answers_match_the_document(openapi, make_app, keypair, tmp_path):
    app = make_app(upload_rate_limit="20/minute", dpp_pipelines_dir=str(tmp_path / "dpp"))
    client = app.test_client()
    token = keypair.token("alice")
    spec = make_spec()
    spec["inputs"][0]["parameters"]["descriptor"] = {
        "resources": [{"name": "gdp", "path": "gdp.csv"}]
    }
    answers = [
        upload(client, spec, token),
        upload(client, spec, token),
        upload(client, make_spec(dataset="secret", findability="private"), token),
        upload(client, make_spec(findability="secret"), token),
        upload(client, make_spec(), None),
        upload(client, make_spec(), keypair.token("bob")),
        upload(client, b"x: [", token, "application/yaml"),
        post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"}),
        post_event(client, {"pipeline_id": "./alice/gdp", "event": "progress", "log": ["a"]}),
        post_event(
            client,
            {
                "pipeline_id": "./alice/gdp",
                "event": "finish",
                "success": True,
                "stats": {
                    ".dpp": {"out-datapackage-url": "x"},
                    "bytes": None,
                    "count_of_rows": 3,
                    "dataset_name": "_",
                    "hash": "a1",
                },
            },
            revision=1,
        ),
        post_event(client, {"pipeline_id": "./alice/none", "event": "start"}),
        post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"}, token="bad"),
        post_event(client, {"event": "start"}),
        client.get("/source/alice/gdp/status"),
        client.get("/source/alice/gdp/info"),
        client.get("/source/alice/gdp/1"),
        client.get("/source/alice/gdp/latest"),
        client.get("/source/alice/gdp/successful"),
        client.get("/source/alice/gdp/9"),
        client.get("/source/alice/secret/status"),
        client.get("/source/alice/secret/info", headers={"Auth-Token": token}),
        client.get("/source/alice"),
        client.get("/source/alice?limit=1&offset=1", headers={"Auth-Token": token}),
        client.get("/source/alice?limit=0"),
        client.get("/source/schema"),
        client.get("/source/schemas/pipeline-event.schema.json"),
        client.get("/source/openapi.json"),
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/metrics"),
        client.get("/"),
        client.get("/datasets/alice/gdp"),
        client.get("/datasets/alice/secret"),
    ]
    statuses = {response.status_code for response in answers}
    assert statuses == {200, 400, 401, 403, 404}
    for response in answers:
        try:
            openapi.validate_response(*_exchange(response))
        except Exception as exc:  # the message names the route and what does not match
            raise AssertionError(
                f"{response.request.method} {response.request.path} {response.status_code}: "
                f"{exc!r} {getattr(exc, '__cause__', None)!r}"
            ) from exc
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["pipeline"]["hooks"][0].endswith("?dataset=alice/gdp&revision=2&token=***")
    assert hook_credential("alice", "gdp", 2) not in json.dumps(info)
