"""The OpenAPI document and the server agree: schemathesis, with all its checks and the
document's links (so that the dataset routes are reached with datasets just uploaded),
against ``python server.py``.

schemathesis runs from its own virtualenv (``make schemathesis``; SPECSTORE_SCHEMATHESIS_VENV
points elsewhere); its configuration and hooks are in ``tests/schemathesis/``. A failed
run's report names its seed: SPECSTORE_SCHEMATHESIS_SEED replays it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.api import HOOK_TOKEN
from tests.support.fitting import SCHEDULE_WINDOW
from tests.support.server import ROOT, server_env

HERE = ROOT / "tests" / "schemathesis"


def _schemathesis() -> Path:
    venv = Path(os.environ.get("SPECSTORE_SCHEMATHESIS_VENV") or ROOT / ".venv-schemathesis")
    binary = venv / "bin" / "st"
    if not binary.exists():
        pytest.fail(f"no schemathesis in {venv}: run `make schemathesis`", pytrace=False)
    return binary


def test_the_server_does_what_its_openapi_document_says(start_server, keypair, tmp_path):
    st = _schemathesis()
    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path}/registry.db",
        AUTH_PUBLIC_KEY=keypair.public_pem,
        HOOK_TOKEN=HOOK_TOKEN,
        RUNNER_WORKERS="0",
        UPLOAD_RATE_LIMIT="off",
        # What the hooks fit generated specs to (tests/support/fitting.py).
        SCHEDULE_MIN_INTERVAL=str(SCHEDULE_WINDOW[0]),
        SCHEDULES_PER_OWNER="0",
        INPUT_ADDRESS_ALLOW="0.0.0.0/0,::/0",
        ENGINE_WAREHOUSE="sqlite://",
        NPM_PUBLIC_REGISTRY="http://npm.test/",
        NPM_PUBLIC_TOKEN="not-used",
        NPM_PUBLIC_SCOPE="hub",
    )
    env = {
        **server_env(),
        "NO_COLOR": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
        "SPECSTORE_TOKEN": keypair.token("alice"),
        "SPECSTORE_HOOK_TOKEN": HOOK_TOKEN,
    }
    # A failure's report names its seed; SPECSTORE_SCHEMATHESIS_SEED replays that run.
    seed = os.environ.get("SPECSTORE_SCHEMATHESIS_SEED")
    result = subprocess.run(
        [
            str(st),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{server.url}/source/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "40",
            "--request-timeout",
            "30",
            *(["--seed", seed] if seed else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-15000:]
    assert "No issues found" in report, report[-15000:]
    assert "Stateful" in report and "API Links:" in report
