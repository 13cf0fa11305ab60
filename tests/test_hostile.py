"""Hostile input: fuzzed specs, bodies, events and headers; fetching only what is allowed,
within limits; nothing written outside the output folder.

Every fuzzed request must get a JSON answer of the documented shape with a 2xx or 4xx
status (never 5xx), and must store a revision exactly when it answers 200.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from specstore.config import NpmRegistry, configure
from specstore.validation import (
    EVENT_SCHEMA,
    SPEC_SCHEMA,
    SchemaValidator,
    event_validator,
    load_schema,
    spec_validator,
)
from tests.conftest import make_spec, post_event, stored_revisions, upload
from tests.support.fitting import NPM_DATASET_MAX, SCHEDULE_WINDOW, fit_spec
from tests.support.net import StaticFiles
from tests.support.pipelines import example_spec, wait_for

FUZZ_EXAMPLES = 50
# Specs generated from the schema cost about a second each to make, whatever the
# database: fewer of them, on SQLite only (the raw-body, event and header fuzzing
# runs on both databases).
SPEC_EXAMPLES = 25
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
ANSWERS = {200, 400, 401, 403, 404, 413, 415}


# Patterns the generator handles slowly (look-aheads, long alternations), narrowed to
# subsets of themselves: everything generated is still valid under the real schema.
NARROWER_PATTERNS = {
    load_schema(SPEC_SCHEMA)["$defs"]["segment"]["pattern"]: "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}$",
    load_schema(SPEC_SCHEMA)["$defs"]["httpUrl"]["pattern"]: (
        "^https?://[a-z0-9]{1,12}(\\.[a-z]{2,6}){0,2}(:[1-9][0-9]{1,3})?(/[A-Za-z0-9._~-]{0,12}){0,3}$"
    ),
}


def _inlined(name: str) -> dict[str, Any]:
    """A published schema with its $defs inlined, as hypothesis-jsonschema wants it."""
    schema = copy.deepcopy(load_schema(name))
    definitions = schema.pop("$defs", {})
    schema.pop("$id", None)
    schema.pop("$schema", None)

    def inline(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                return inline(definitions[value["$ref"].rsplit("/", 1)[-1]])
            value = {key: inline(item) for key, item in value.items()}
            if value.get("pattern") in NARROWER_PATTERNS:
                value["pattern"] = NARROWER_PATTERNS[value["pattern"]]
            return value
        if isinstance(value, list):
            return [inline(item) for item in value]
        return value

    return inline(schema)


VALID_SPECS = from_schema(_inlined(SPEC_SCHEMA))
HOSTILE_VALUES = st.one_of(
    st.just("../../../etc/passwd"),
    st.just("..\\..\\windows"),
    st.just("a\x00b"),
    st.just("/absolute/path"),
    st.just("\udcff"),
    st.just("x" * 10_000),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.text(max_size=40),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def broken_specs(draw: st.DrawFn) -> Any:
    """A valid spec, then broken in one to three places: values replaced by hostile
    ones, keys dropped, or the whole thing made into something that is not a spec."""
    spec = draw(VALID_SPECS)
    if draw(st.integers(0, 9)) == 0:
        return draw(HOSTILE_VALUES)
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path in _paths(spec) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(HOSTILE_VALUES)
    return spec


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


EVENT_PAYLOADS = st.one_of(
    from_schema(_inlined(EVENT_SCHEMA)),
    st.dictionaries(
        st.sampled_from(["pipeline_id", "pipeline", "event", "success", "errors", "log", "stats"]),
        HOSTILE_VALUES,
        max_size=5,
    ),
    HOSTILE_VALUES,
)


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


def _verdicts(name: str, instance: Any) -> tuple[bool | None, bool]:
    """(jsonschema-rs's verdict, None where it cannot read the instance; jsonschema's)."""
    schema = load_schema(name)
    try:
        compiled = jsonschema_rs.validator_for(schema, validate_formats=False).is_valid(instance)
    except (ValueError, TypeError):
        compiled = None
    return compiled, not any(Draft202012Validator(schema).iter_errors(instance))


@settings(FUZZ, max_examples=SPEC_EXAMPLES)
@given(spec=st.one_of(VALID_SPECS, broken_specs()))
def test_fuzz_the_compiled_validator_judges_specs_as_jsonschema_does(spec):
    compiled, python = _verdicts(SPEC_SCHEMA, spec)
    assert compiled in (python, None), (compiled, python)
    problems = spec_validator().errors(spec)
    assert (problems == []) is python, problems
    if not python:
        # The words are jsonschema's, with the path to what is wrong.
        assert all(": " in problem for problem in problems), problems


@FUZZ
@given(payload=EVENT_PAYLOADS)
def test_fuzz_the_compiled_validator_judges_events_as_jsonschema_does(payload):
    compiled, python = _verdicts(EVENT_SCHEMA, payload)
    assert compiled in (python, None), (compiled, python)
    assert (event_validator().errors(payload) == []) is python


def test_where_the_validators_disagree_the_compiled_verdict_stands():
    # Python's \d also matches other scripts' digits; ECMA-262's, which jsonschema-rs
    # follows, only 0-9. The compiled validator refuses, jsonschema finds nothing wrong:
    # the instance is refused, in jsonschema-rs's words, with the path.
    validator = SchemaValidator({"properties": {"number": {"pattern": "^\\d+$"}}})
    assert validator.errors({"number": "\u0661\u0662"}) == [
        'number: "\u0661\u0662" does not match "^\\d+$"'
    ]
    assert validator.errors({"number": "12"}) == []
    # A value jsonschema-rs cannot read is judged by jsonschema alone.
    assert validator.errors({"number": "1\udcff"}) == [
        "number: '1\\udcff' does not match '^\\\\d+$'"
    ]


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


def _run_package(client, keypair, folder, resources):
    """Serve a data package of ``resources`` (and a small CSV) from ``folder``, upload a
    spec for it, and wait for its run to end; the final status."""
    folder.mkdir()
    (folder / "gdp-2019.csv").write_text("a,b\n1,2\n")
    (folder / "datapackage.json").write_text(json.dumps({"resources": resources}))
    with StaticFiles(str(folder)) as files:
        spec = example_spec(files.url)
        spec["inputs"][0]["parameters"] = {}
        spec["processing"] = []
        upload(client, spec, keypair.token("alice"))
        return wait_for(lambda: client.get("/source/alice/gdp/status").get_json())


def test_a_resource_path_to_a_host_outside_the_allow_list_is_invalid(make_app, keypair, tmp_path):
    app = make_app(runner_workers=1, input_url_allow=("127.0.0.1",))
    client = app.test_client()
    status = _run_package(
        client, keypair, tmp_path / "served", [{"name": "x", "path": "http://10.0.0.1/x.csv"}]
    )
    assert status["state"] == "INVALID"
    assert client.get("/source/alice/gdp/info").get_json()["error_log"] == [
        "resource x: the host '10.0.0.1' is not allowed (INPUT_URL_ALLOW)"
    ]


def test_a_redirect_to_a_host_outside_the_allow_list_is_not_followed(
    make_app, keypair, example_data
):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://localhost:1/internal.csv")
            self.end_headers()

        def log_message(self, *args):
            pass

    bouncer = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=bouncer.serve_forever, daemon=True).start()
    try:
        app = make_app(runner_workers=1, input_url_allow=("127.0.0.1",))
        client = app.test_client()
        spec = example_spec(example_data)
        bounce = f"http://127.0.0.1:{bouncer.server_address[1]}/gdp.csv"
        spec["inputs"][0]["parameters"]["resource-mapping"]["gdp"] = bounce
        assert upload(client, spec, keypair.token("alice")).status_code == 200
        status = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())
    finally:
        bouncer.shutdown()
        bouncer.server_close()
    assert status["state"] == "FAILED"
    assert client.get("/source/alice/gdp/info").get_json()["error_log"] == [
        f"resource gdp: {bounce} redirects to a URL that may not be fetched: "
        "the host 'localhost' is not allowed (INPUT_URL_ALLOW)"
    ]


def test_downloads_larger_than_the_limit_fail(make_app, keypair, example_data):
    app = make_app(runner_workers=1, download_max_bytes=5000)  # population.xlsx is larger
    client = app.test_client()
    upload(client, example_spec(example_data), keypair.token("alice"))
    assert wait_for(lambda: client.get("/source/alice/gdp/status").get_json())["state"] == "FAILED"
    error_log = client.get("/source/alice/gdp/info").get_json()["error_log"]
    assert error_log == [
        f"resource population: {example_data}population.xlsx is larger than 5000 bytes"
    ]


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


@pytest.mark.parametrize(
    "resource",
    [
        {"name": "../../escape", "path": "gdp-2019.csv"},
        {"name": "ok", "path": "../../../../etc/passwd"},
        {"name": "ok", "path": "/etc/passwd"},
    ],
)
def test_data_package_names_and_paths_cannot_leave_the_output_folder(
    make_app, keypair, tmp_path, resource
):
    served, output = tmp_path / "served", tmp_path / "output"
    app = make_app(runner_workers=1, output_dir=str(output))
    status = _run_package(app.test_client(), keypair, served, [resource])
    assert status["state"] in ("INVALID", "FAILED")
    outside = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and not path.is_relative_to(output) and not path.is_relative_to(served)
    ]
    assert outside == []
