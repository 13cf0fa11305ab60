"""Hostile data packages run for real: only allowed hosts are fetched, within limits, and
nothing is written outside the output folder."""

from __future__ import annotations

import json

import pytest

from tests.support.api import upload
from tests.support.net import StaticFiles
from tests.support.pipelines import example_spec, wait_for


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
        f"resource population: {example_data}population.xlsx is larger than 5000 bytes, "
        "the most this server downloads (DOWNLOAD_MAX_BYTES)"
    ]


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
