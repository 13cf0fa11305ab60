"""The npm client as the tests run it, and the specs and packages they check."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import tarfile
from pathlib import Path

from tests.support.api import upload
from tests.support.pipelines import example_spec, wait_for


def run_npm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=npm_env(cwd),
    )


def npm_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "npm_config_cache": str(home / ".npm-cache"),
        "npm_config_userconfig": str(home / ".npmrc"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def npm_spec(base_url: str, dataset: str = "gdp", credentials: str | None = "local", **meta):
    spec = example_spec(base_url, dataset=dataset, **meta)
    parameters = {"credentials": credentials} if credentials else {}
    spec["outputs"] = [{"kind": "sqlite"}, {"kind": "npm", "parameters": parameters}]
    return spec


def run_to_the_end(client, keypair, spec) -> dict:
    owner, dataset = spec["meta"]["ownerid"], spec["meta"]["dataset"]
    headers = {"Auth-Token": keypair.token(owner)}
    response = upload(client, spec, headers["Auth-Token"])
    assert response.status_code == 200, response.get_json()
    status = f"/source/{owner}/{dataset}/status"
    return wait_for(lambda: client.get(status, headers=headers).get_json())


def tarball_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile()
        }


def csv_rows(data: bytes) -> list[tuple]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    return [(country, int(year), float(gdp)) for country, year, gdp in rows[1:]]
