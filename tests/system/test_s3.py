"""Runs publish to a real S3 server over HTTP (moto's standalone server), talked to with
boto3 as a production bucket is: the keys, the ACLs, presigned URLs for a private
dataset, a dataset turning public, the storage failing mid-run, and DPP's pipeline
workers uploading the very same objects as the embedded runner."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from specstore.pipelines.dpp import DATASET_FILE
from tests.support.api import status_of, upload
from tests.support.dpp import specstore_for
from tests.support.pipelines import HANDED_OVER, example_spec, pipelines_for_dpp, wait_for
from tests.support.s3 import BUCKET, CREDENTIALS
from tests.support.server import get_json, post_spec

EXAMPLE_CSV = Path(__file__).parents[2] / "examples" / "datapackage" / "gdp-2019.csv"


def _app(make_app, s3, **overrides):
    return make_app(
        runner_workers=1,
        storage="s3",
        s3_bucket=BUCKET,
        s3_endpoint_url=s3.endpoint,
        **overrides,
    )


def test_a_run_publishes_to_the_bucket_readable_without_credentials(
    make_app, s3, keypair, example_data
):
    client = _app(make_app, s3, s3_prefix="hub").test_client()
    assert upload(client, example_spec(example_data), keypair.token("alice")).status_code == 200
    status = wait_for(status_of(client))
    assert status["state"] == "SUCCEEDED", status

    stored = s3.keys("hub/")
    outputs = {output["name"]: output for output in status["outputs"]}
    assert set(stored) == {
        *(
            f"hub/alice/gdp/{name}/{output['hash']}/{name}.{output['format']}"
            for name, output in outputs.items()
        ),
        "hub/alice/gdp/1/datapackage.json",
        "hub/alice/gdp/findability",
    }
    for name, output in outputs.items():
        assert output["url"] == (
            f"{s3.endpoint}/{BUCKET}/hub/alice/gdp/{name}/{output['hash']}/{name}.{output['format']}"
        )
        anonymous = requests.get(output["url"], timeout=10)  # no credentials at all
        assert anonymous.status_code == 200, name
        assert hashlib.md5(anonymous.content).hexdigest() == output["hash"]
    assert requests.get(outputs["gdp"]["url"], timeout=10).content == EXAMPLE_CSV.read_bytes()
    head = s3.client().head_object(
        Bucket=BUCKET, Key=urlsplit(outputs["gdp_csv"]["url"]).path[len(BUCKET) + 2 :]
    )
    assert head["ContentType"] == "text/csv; charset=utf-8"

    descriptor = requests.get(status["datapackage_url"], timeout=10).json()
    assert status["datapackage_url"] == f"{s3.endpoint}/{BUCKET}/hub/alice/gdp/1/datapackage.json"
    assert {res["name"]: res["path"] for res in descriptor["resources"]} == {
        name: output["url"] for name, output in outputs.items()
    }
    assert descriptor["datahub"]["flowid"] == "alice/gdp/1"
    # The bucket's credentials are in no answer.
    info = client.get("/source/alice/gdp/info")
    for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in info.text
        assert secret not in json.dumps(status)
        assert secret not in json.dumps(descriptor)


def test_a_private_dataset_is_read_by_presigned_urls_and_turns_public_with_its_dataset(
    make_app, s3, keypair, example_data
):
    client = _app(make_app, s3, presigned_url_seconds=600).test_client()
    owner = keypair.token("alice")
    upload(client, example_spec(example_data, findability="private"), owner)
    status = wait_for(status_of(client, token=owner))
    assert status["state"] == "SUCCEEDED", status
    for output in status["outputs"]:
        plain = f"{s3.endpoint}/{BUCKET}/alice/gdp/{output['name']}/{output['hash']}/"
        assert output["url"].startswith(plain)
        query = parse_qs(urlsplit(output["url"]).query)
        # moto does not enforce the lifetime: the URL's own parameters say it.
        assert query["X-Amz-Expires"] == ["600"]
        assert "X-Amz-Signature" in query
        presigned = requests.get(output["url"], timeout=10)
        assert presigned.status_code == 200
        assert hashlib.md5(presigned.content).hexdigest() == output["hash"]
        anonymous = requests.get(output["url"].split("?")[0], timeout=10)
        assert anonymous.status_code == 403
    plain_descriptor = status["datapackage_url"].split("?")[0]
    assert requests.get(plain_descriptor, timeout=10).status_code == 403
    assert requests.get(status["datapackage_url"], timeout=10).status_code == 200

    # The next revision makes the dataset public: every object of it turns, the older too.
    upload(client, example_spec(example_data, findability="published"), owner)
    second = wait_for(lambda: client.get("/source/alice/gdp/2").get_json())
    assert second["state"] == "SUCCEEDED", second
    assert "X-Amz-Signature" not in second["datapackage_url"]
    assert requests.get(plain_descriptor, timeout=10).status_code == 200
    for output in status["outputs"]:
        assert requests.get(output["url"].split("?")[0], timeout=10).status_code == 200

    # And private again: none of them is readable without credentials.
    upload(client, example_spec(example_data, findability="private"), owner)
    third = wait_for(
        lambda: client.get("/source/alice/gdp/3", headers={"Auth-Token": owner}).get_json()
    )
    assert third["state"] == "SUCCEEDED", third
    for key in s3.keys("alice/gdp/"):
        assert requests.get(f"{s3.endpoint}/{BUCKET}/{key}", timeout=10).status_code == 403, key


class _Slow(BaseHTTPRequestHandler):
    """The example CSV, sent a moment after it is asked for."""

    def do_GET(self):
        time.sleep(3)
        body = EXAMPLE_CSV.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_storage_stopped_mid_run_fails_the_run_and_a_later_run_succeeds(
    make_app, s3, keypair, example_data
):
    client = _app(make_app, s3).test_client()
    owner = keypair.token("alice")
    upload(client, example_spec(example_data), owner)
    first = wait_for(status_of(client))
    assert first["state"] == "SUCCEEDED", first

    slow = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        spec = example_spec(example_data)
        mapping = spec["inputs"][0]["parameters"]["resource-mapping"]
        mapping["gdp"] = f"http://127.0.0.1:{slow.server_address[1]}/gdp.csv"
        upload(client, spec, owner)
        wait_for(lambda: client.get("/source/alice/gdp/2").get_json(), states={"RUNNING"})
        s3.stop()
        failed = wait_for(lambda: client.get("/source/alice/gdp/2").get_json(), timeout=120)
    finally:
        slow.shutdown()
        slow.server_close()
    assert failed["state"] == "FAILED"
    assert failed["errors"][0].startswith(
        f"the publication cannot be stored: the object storage (bucket {BUCKET} at "
        f"{s3.endpoint}) cannot be reached for alice/gdp/"
    ), failed["errors"]
    assert "datapackage_url" not in failed
    # The last good publication is still the one shown.
    successful = client.get("/source/alice/gdp/successful").get_json()
    assert (successful["revision"], successful["datapackage_url"]) == (
        1,
        first["datapackage_url"],
    )

    s3.start()  # empty again: moto keeps its objects in memory
    upload(client, example_spec(example_data), owner)
    third = wait_for(lambda: client.get("/source/alice/gdp/3").get_json())
    assert third["state"] == "SUCCEEDED", third
    assert requests.get(third["datapackage_url"], timeout=10).status_code == 200
    assert "alice/gdp/2/datapackage.json" not in s3.keys("alice/gdp/")


def test_dpp_workers_upload_the_very_objects_the_embedded_runner_does(
    dpp, start_server, make_app, s3, keypair, example_data, tmp_path
):
    # DPP: its pipeline processes publish with the credentials of their own environment.
    server = specstore_for(
        dpp, start_server, keypair, tmp_path / "dpp-output", **s3.settings("dpp")
    )
    post_spec(server, keypair, example_spec(example_data)).raise_for_status()
    wait_for(lambda: get_json(server, "/source/alice/gdp/status"), states=HANDED_OVER)
    written = (dpp.root / "alice" / "gdp" / DATASET_FILE).read_text()
    pipeline = json.dumps(pipelines_for_dpp(dpp.root))
    for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in pipeline and secret not in written
    ran = dpp.run("alice/gdp", **CREDENTIALS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    on_dpp = wait_for(lambda: get_json(server, "/source/alice/gdp/status"), timeout=30)
    assert on_dpp["state"] == "SUCCEEDED", on_dpp
    for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
        assert secret not in ran.stdout + ran.stderr
        assert secret not in json.dumps(get_json(server, "/source/alice/gdp/info"))

    # The embedded runner, on the same spec, into another prefix of the same bucket.
    client = _app(make_app, s3, s3_prefix="embedded").test_client()
    upload(client, example_spec(example_data), keypair.token("alice"))
    embedded = wait_for(status_of(client))
    assert embedded["state"] == "SUCCEEDED", embedded

    def objects(prefix: str) -> dict[str, bytes]:
        return {
            key.removeprefix(prefix): body
            for key, body in s3.keys(prefix).items()
            if not key.endswith("datapackage.json")
        }

    assert objects("dpp/") == objects("embedded/")
    assert len(objects("dpp/")) == len(on_dpp["outputs"]) + 1  # and the findability marker
    assert [o["hash"] for o in on_dpp["outputs"]] == [o["hash"] for o in embedded["outputs"]]


def test_a_large_file_goes_up_in_parts_and_unchanged_data_is_not_stored_again(
    make_app, s3, keypair, example_data, tmp_path
):
    from datapackage_pipelines_specstore.storage import MULTIPART_BYTES, S3Storage

    storage = S3Storage(BUCKET, endpoint_url=s3.endpoint)
    large = tmp_path / "large.csv"
    with large.open("wb") as out:
        for _ in range(2 * MULTIPART_BYTES // (1024 * 1024) + 1):
            out.write(b"x" * (1024 * 1024))
    storage.put("alice/big/large/0a/large.csv", large, public=True)
    head = s3.client().head_object(Bucket=BUCKET, Key="alice/big/large/0a/large.csv")
    assert head["ContentLength"] == large.stat().st_size
    assert head["ETag"].strip('"').endswith("-3")  # three parts

    client = _app(make_app, s3).test_client()
    spec = example_spec(example_data)
    upload(client, spec, keypair.token("alice"))
    first = wait_for(status_of(client))
    assert first["state"] == "SUCCEEDED", first
    before = set(s3.keys("alice/gdp/"))
    upload(client, spec, keypair.token("alice"))
    second = wait_for(lambda: client.get("/source/alice/gdp/2").get_json())
    assert second["state"] == "SUCCEEDED", second
    assert second["outputs"] == first["outputs"]
    assert set(s3.keys("alice/gdp/")) == before | {"alice/gdp/2/datapackage.json"}
