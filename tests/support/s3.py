"""A real S3 server over HTTP for the tests: moto's standalone server (``moto_server``, from
``moto[server]`` in requirements-dev.txt) on a loopback port, talked to with boto3 exactly
as a production bucket is. It keeps its objects in memory: stopped and started again, it
is empty (the tests make their bucket again)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.net import free_port, wait_for_http

BUCKET = "specstore-test"
# moto's default mode takes any credentials; these are the tests' own, never real ones.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "specstore-test-key",
    "AWS_SECRET_ACCESS_KEY": "specstore-test-secret-3f9a1c",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def moto_server_command() -> str:
    found = Path(sys.executable).with_name("moto_server")
    if found.exists():
        return str(found)
    on_path = shutil.which("moto_server")
    if on_path is None:
        raise RuntimeError("moto_server is not installed: make install-dev installs moto[server]")
    return on_path


class MotoServer:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (again, on the same port), with the tests' bucket in it."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [moto_server_command(), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS},
            )
        wait_for_http(self.endpoint + "/", alive=lambda: self.process.poll() is None)
        self.client().create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def keys(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix``, by key, with its bytes."""
        client = self.client()
        found = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents") or []:
                body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                found[item["Key"]] = body
        return found

    def settings(self, prefix: str = "") -> dict[str, str]:
        """The environment of a specstore (and a DPP) that publishes to this server."""
        return {
            "STORAGE": "s3",
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_PREFIX": prefix,
            **CREDENTIALS,
        }
