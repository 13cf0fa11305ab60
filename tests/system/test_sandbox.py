"""Untrusted data packages, tried as an attacker would, on both engines.

An uploader decides which data package a pipeline reads. Served for real on loopback:
an "internal" service on a second address (127.0.0.2) holding a secret, and an allowed
host (127.0.0.1, the only one INPUT_URL_ALLOW admits) serving nested data packages,
local-file URLs, a redirect to the internal service, a server that drips bytes, and
archives that unpack to 30 MB from a few KB. Each attack runs on the embedded runner
and on a real DPP 2.2.11 (``dpp run``, specstore's processors from DPP's virtualenv),
and must end refused at upload (400), INVALID or FAILED with a clear reason, or as a
harmless copy; and the secret, the server's environment (a database password in
ENGINE_CANARY) and /etc/passwd must appear nowhere: in no output file, no answer
(status, info, revision), no log, and the internal service must see no request at all.
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engines import Embedded, OnDpp, dpp_stack
from tests.support.hostile import Hostile, Internal
from tests.support.pipelines import example_spec

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CANARY = "canary-password-4f7d1c"
CANARY_ENGINE = f"postgresql://reader:{CANARY}@127.0.0.1:9/nothing"
LIMITS = {
    "INPUT_URL_ALLOW": "127.0.0.1",
    "DOWNLOAD_TIMEOUT": "3",
    "DOWNLOAD_MAX_BYTES": "200000",
    "UNPACKED_MAX_BYTES": "1000000",
}
PASSWD = b"root:x:0:0"


@pytest.fixture(scope="module")
def internal() -> Iterator[Internal]:
    with Internal() as server:
        yield server


@pytest.fixture(scope="module")
def hostile(internal: Internal) -> Iterator[Hostile]:
    with Hostile(internal) as server:
        yield server


@pytest.fixture(scope="module")
def on_dpp(tmp_path_factory: pytest.TempPathFactory, keypair: Any) -> Iterator[OnDpp]:
    root = tmp_path_factory.mktemp("sandbox-dpp")
    canary = {"ENGINE_CANARY": CANARY_ENGINE}
    with dpp_stack(root, keypair.public_pem, run_env=canary, **canary, **LIMITS) as stack:
        yield stack


@pytest.fixture(params=["embedded", "dpp"])
def engine(request: pytest.FixtureRequest, make_app: Any, tmp_path: Path) -> Embedded | OnDpp:
    if request.param == "dpp":
        return request.getfixturevalue("on_dpp")
    output = tmp_path / "output"
    app = make_app(
        runner_workers=1,
        output_dir=str(output),
        input_url_allow=("127.0.0.1",),
        download_timeout=3.0,
        download_max_bytes=200_000,
        unpacked_max_bytes=1_000_000,
        engines={"CANARY": CANARY_ENGINE},
    )
    return Embedded(app, output)


_datasets = iter(range(10_000))


def _spec(hostile: Hostile, resources: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """A spec whose data package (served by ``hostile``, fetched by the engine) has
    ``resources``; a dataset name of its own, so runs never share outputs."""
    spec = example_spec(hostile.url, dataset=f"attack-{next(_datasets)}")
    spec["inputs"][0]["url"] = hostile.serve_package({"name": "attack", "resources": resources})
    spec["inputs"][0]["parameters"] = {}
    spec["processing"] = []
    spec["outputs"] = [{"kind": "sqlite"}, {"kind": "zip", "parameters": {"out-file": "all.zip"}}]
    spec.update(changes)
    return spec


def _texts(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``root``, zip members opened."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            yield str(path), content
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        yield f"{path}!{member}", archive.read(member)


def _assert_nothing_leaked(engine: Embedded | OnDpp, internal: Internal, dataset: str) -> str:
    """The secret, the canary and /etc/passwd are in no answer and no file, and the
    internal service was never asked; the info body, for more checks."""
    secrets = (internal.secret.encode(), CANARY.encode(), PASSWD)
    answers = {}
    for route in ("status", "info", "latest", "1"):
        status, body = engine.get(f"/source/alice/{dataset}/{route}")
        assert status == 200, (route, body)
        answers[route] = body
    for route, body in answers.items():
        for secret in secrets:
            assert secret.decode() not in body, (route, secret)
    for root in engine.roots:
        for name, content in _texts(root):
            for secret in secrets:
                assert secret not in content, (name, secret)
    assert internal.requests == []
    return answers["info"]


def _why(info: dict[str, Any]) -> str:
    return f"{info['state']}: {info['error_log']}\n{info['reason'][-3000:]}"


def _run(engine: Embedded | OnDpp, keypair: Any, spec: dict[str, Any]) -> tuple[dict, dict]:
    status, body = engine.upload(spec, keypair.token("alice"))
    assert status == 200, body
    final = engine.finish(spec["meta"]["dataset"])
    info = json.loads(engine.get(f"/source/alice/{spec['meta']['dataset']}/info")[1])
    return final, info


# -- reading what the spec does not name ------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (
            {"name": "passwd", "path": "file:///etc/passwd", "format": "csv"},
            "resource passwd: only http and https URLs can be fetched, not 'file:///etc/passwd'",
        ),
        (
            {"name": "environ", "path": "file:///proc/self/environ", "format": "csv"},
            "resource environ: only http and https URLs can be fetched, "
            "not 'file:///proc/self/environ'",
        ),
        (
            {"name": "secret", "path": "INTERNAL/secret.csv", "format": "csv"},
            "resource secret: the host '127.0.0.2' is not allowed (INPUT_URL_ALLOW)",
        ),
        (
            {"name": "slash", "path": "http://INTERNAL_HOST\\@ALLOWED_HOST/../secret.csv"},
            "resource slash: 'http://INTERNAL_HOST\\\\@ALLOWED_HOST/../secret.csv' holds "
            "characters URLs must not hold (white space, '\\', controls)",
        ),
    ],
    ids=["file-url", "environ", "internal-host", "backslash"],
)
def test_resources_that_point_elsewhere_are_invalid(
    engine, hostile, internal, keypair, resource, reason
):
    for key in ("path",):
        resource[key] = (
            resource[key]
            .replace("INTERNAL_HOST", internal.host)
            .replace("INTERNAL", internal.url.rstrip("/"))
            .replace("ALLOWED_HOST", hostile.host)
        )
    reason = reason.replace("INTERNAL_HOST", internal.host).replace("ALLOWED_HOST", hostile.host)
    spec = _spec(hostile, [resource])
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "INVALID", _why(info)
    assert info["error_log"] == [reason]
    _assert_nothing_leaked(engine, internal, spec["meta"]["dataset"])


def test_the_backslash_trick_is_refused_at_upload(engine, hostile, internal, keypair):
    spec = _spec(hostile, [{"name": "data", "path": "data.csv"}])
    trick = f"http://{internal.host}\\@{hostile.host}/../secret.csv"
    spec["inputs"][0]["parameters"]["resource-mapping"] = {"data": trick}
    status, body = engine.upload(spec, keypair.token("alice"))
    assert status == 400
    assert body["errors"] == [
        f"inputs[0].parameters['resource-mapping'].data: {trick!r} does not match: an http or "
        "https URL: a host name (letters, digits, '-' and '.') or an IP address, a port from 0 "
        "to 65535 if any, and printable ASCII after it, but for white space and backslash"
    ]
    assert engine.get(f"/source/alice/{spec['meta']['dataset']}/status")[0] == 404
    assert internal.requests == []


@pytest.mark.parametrize(
    "resource",
    [
        {"name": "nested", "path": "nested/datapackage.json"},
        {"name": "nested", "path": "nested/datapackage.json", "format": "datapackage"},
        {"name": "nested", "path": "nested/datapackage.json", "format": "json", "scheme": "file"},
    ],
    ids=["by-url", "by-format", "with-scheme"],
)
def test_a_nested_data_package_is_one_file_never_opened(
    engine, hostile, internal, keypair, resource
):
    spec = _spec(hostile, [resource, {"name": "data", "path": "passwd.csv", "scheme": "file"}])
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "SUCCEEDED", _why(info)
    package = engine.output / "alice" / spec["meta"]["dataset"] / "datapackage"
    # The nested descriptor is copied byte for byte, as a file; nothing it names is read.
    assert (package / "nested" / "datapackage.json").read_bytes() == json.dumps(
        hostile.nested()
    ).encode()
    # A "scheme: file" resource is read from the data package's host, as any other.
    assert (package / "data.csv").read_text().splitlines() == ["country,year", "France,2019"]
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert [(r["name"], r["path"]) for r in descriptor["resources"]] == [
        ("data", "data.csv"),
        ("nested", "nested/datapackage.json"),
    ]
    assert not (engine.output.parent / "escape.csv").exists()
    _assert_nothing_leaked(engine, internal, spec["meta"]["dataset"])


def test_a_redirect_to_a_refused_host_is_not_followed(engine, hostile, internal, keypair):
    spec = _spec(hostile, [{"name": "data", "path": "redirect.csv"}])
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "FAILED", _why(info)
    assert info["error_log"] == [
        f"resource data: {hostile.url}redirect.csv redirects to a URL that may not be fetched: "
        "the host '127.0.0.2' is not allowed (INPUT_URL_ALLOW)"
    ]
    _assert_nothing_leaked(engine, internal, spec["meta"]["dataset"])


def test_a_processing_step_cannot_make_a_resource_a_data_package(
    engine, hostile, internal, keypair
):
    spec = _spec(hostile, [{"name": "data", "path": "nested/datapackage.json", "format": "csv"}])
    spec["processing"] = [
        {"input": "data", "output": "data", "tabulator": {"format": "datapackage"}}
    ]
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "INVALID"
    assert info["error_log"] == [
        "resource 'data': 'datapackage' is not a table format "
        "(csv, tsv, xls, xlsx, ods, json, ndjson, jsonl)"
    ]
    _assert_nothing_leaked(engine, internal, spec["meta"]["dataset"])


# -- limits that hold against hostile servers and files -----------------------------------------


@pytest.mark.parametrize(
    ("resource", "tabulator", "what"),
    [
        ({"name": "bomb", "path": "bomb.csv", "format": "csv"}, {"compression": "zip"}, "bomb.csv"),
        ({"name": "bomb", "path": "bomb.xlsx", "format": "xlsx"}, None, "bomb.xlsx"),
        (
            {"name": "bomb", "path": "bomb.csv.gz", "format": "csv"},
            {"compression": "gz"},
            "bomb.csv.gz",
        ),
    ],
    ids=["zip", "xlsx", "gzip"],
)
def test_archives_that_unpack_past_the_limit_fail(
    engine, hostile, internal, keypair, resource, tabulator, what
):
    spec = _spec(hostile, [resource])
    if tabulator:
        spec["processing"] = [{"input": "bomb", "output": "bomb", "tabulator": tabulator}]
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "FAILED", _why(info)
    assert info["error_log"] == [
        f"resource bomb: {hostile.url}{what} unpacks to more than 1000000 bytes "
        "(UNPACKED_MAX_BYTES)"
    ]
    # Not a byte of it unpacked anywhere.
    assert not any(len(content) > 1_000_000 for root in engine.roots for _, content in _texts(root))


def test_a_server_that_drips_bytes_is_cut_off_at_the_deadline(engine, hostile, internal, keypair):
    spec = _spec(hostile, [{"name": "data", "path": "drip.csv", "format": "csv"}])
    started = time.monotonic()
    status, info = _run(engine, keypair, spec)
    # The server would go on for a minute; the 3 s deadline ends it (with room for
    # DPP's start-up).
    assert time.monotonic() - started < 40
    assert status["state"] == "FAILED", _why(info)
    assert info["error_log"] == [f"resource data: {hostile.url}drip.csv took longer than 3 s"]


def test_an_upload_never_waits_on_the_data_package(engine, hostile, internal, keypair):
    """A spec without its descriptor is planned in the background (and its fetch cut off
    at the deadline): the upload itself never waits on the network. The answer comes
    while the fetch, which takes the whole 3 s deadline to fail, is still going: the
    revision is not planned yet (LOADED on DPP; queued on the embedded runner, whose
    worker plans it)."""
    spec = _spec(hostile, [])
    spec["inputs"][0]["url"] = hostile.url + "drip.csv"
    status, body = engine.upload(spec, keypair.token("alice"))
    assert status == 200, body
    at_answer = json.loads(engine.get(f"/source/alice/{spec['meta']['dataset']}/status")[1])
    assert at_answer["state"] == ("LOADED" if isinstance(engine, OnDpp) else "REGISTERED")
    final = engine.finish(spec["meta"]["dataset"])
    assert final["state"] == "FAILED"
    info = json.loads(engine.get(f"/source/alice/{spec['meta']['dataset']}/info")[1])
    assert info["error_log"] == [f"the data package {hostile.url}drip.csv took longer than 3 s"]


# -- writing only under the dataset's folder ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../../../../escape.pdf", "/tmp/escape.pdf", "..\\..\\escape.pdf", "a/../../../escape.pdf"],
)
def test_files_of_the_data_package_stay_in_the_dataset_folder(
    engine, hostile, internal, keypair, path
):
    spec = _spec(
        hostile,
        [{"name": "report", "path": path, "format": "pdf"}, {"name": "data", "path": "data.csv"}],
    )
    spec["inputs"][0]["parameters"]["resource-mapping"] = {path: hostile.url + "data.csv"}
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "SUCCEEDED", _why(info)
    dataset = engine.output / "alice" / spec["meta"]["dataset"]
    package = dataset / "datapackage"
    assert (package / "report.pdf").read_bytes() == hostile.benign
    outside = [
        found
        for root in (engine.output, *engine.roots)
        for found, _ in _texts(root)
        if "escape" in found
    ]
    assert outside == []
    assert not Path("/tmp/escape.pdf").exists()


def test_the_plan_shown_names_no_server_path(engine, hostile, internal, keypair):
    spec = _spec(hostile, [{"name": "data", "path": "data.csv"}])
    status, info = _run(engine, keypair, spec)
    assert status["state"] == "SUCCEEDED", _why(info)
    for root in engine.roots:
        for key, value in info.items():
            assert str(root.resolve()) not in json.dumps(value), (key, value)
    assert str(Path(sys.prefix)) not in json.dumps(info)
    steps = {step["run"]: step["parameters"] for step in info["pipeline"]["pipeline"]}
    assert steps["dump_to_path"] == {
        "out-path": ".staging/1/datapackage",
        "validator_options": {"field_names": []},
    }
    assert steps["specstore.publication"]["storage"]["root"] == "<data>"
    assert steps["specstore.publish"]["target"] == "."
