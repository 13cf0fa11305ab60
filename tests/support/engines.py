"""The two engines as a test drives them, through one interface: the embedded runner
(the app in the test's process, through Flask's test client) and a real DPP (``python
server.py`` writing pipelines that ``dpp run`` then runs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import update

from specstore.store.database import Database
from specstore.store.models import Dataset
from tests.support.api import HOOK_SECRET, upload
from tests.support.dpp import DppDeployment, DppUnavailable, dpp_venv
from tests.support.pipelines import wait_for
from tests.support.server import Server, server_env


class Embedded:
    """The embedded runner, in this process, through Flask's test client."""

    name = "embedded"

    def __init__(self, app: Any, output: Path) -> None:
        self.app = app
        self.client = app.test_client()
        self.output = output
        self.roots = [output]

    def upload(self, spec: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        response = upload(self.client, spec, token)
        return response.status_code, response.get_json()

    def get(self, path: str) -> tuple[int, str]:
        response = self.client.get(path)
        return response.status_code, response.get_data(as_text=True)

    def finish(self, dataset: str, owner: str = "alice") -> dict[str, Any]:
        return wait_for(lambda: json.loads(self.get(f"/source/{owner}/{dataset}/status")[1]))

    @property
    def settings(self) -> Any:
        return self.app.extensions["specstore.components"].settings

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def make_due(self, dataset: str, owner: str = "alice") -> None:
        make_due(self.settings.database_url, owner, dataset)


class OnDpp:
    """``python server.py`` handing pipelines to a real DPP, which runs them by ``dpp run``
    (with ``run_env`` added to its environment)."""

    name = "dpp"

    def __init__(
        self,
        server: Server,
        dpp: DppDeployment,
        output: Path,
        run_env: dict[str, str] | None = None,
    ) -> None:
        self.server = server
        self.dpp = dpp
        self.output = output
        self.roots = [output, dpp.root]
        self.run_env = run_env or {}

    def upload(self, spec: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        response = requests.post(
            self.server.url + "/source/upload",
            json=spec,
            headers={"Auth-Token": token},
            timeout=30,
        )
        return response.status_code, response.json()

    def get(self, path: str) -> tuple[int, str]:
        response = requests.get(self.server.url + path, timeout=30)
        return response.status_code, response.text

    def finish(self, dataset: str, owner: str = "alice") -> dict[str, Any]:
        def status() -> dict[str, Any]:
            return json.loads(self.get(f"/source/{owner}/{dataset}/status")[1])

        handed = wait_for(
            status, states=("REGISTERED", "RUNNING", "SUCCEEDED", "FAILED", "INVALID")
        )
        if handed["state"] != "REGISTERED":
            return handed
        ran = self.dpp.run(f"{owner}/{dataset}", **self.run_env)
        assert "Traceback" not in ran.stdout, ran.stdout[-3000:]
        return wait_for(status, timeout=60)

    @property
    def data_dir(self) -> Path:
        return Path(self.server.env["DATA_DIR"])

    def make_due(self, dataset: str, owner: str = "alice") -> None:
        make_due(self.server.env["DATABASE_URL"], owner, dataset)


def make_due(database_url: str, owner: str, dataset: str) -> None:
    """Make the dataset's schedule due now (the server's scheduler fires it within its
    poll), as if its interval had passed."""
    database = Database(database_url)
    try:
        with database.transaction() as session:
            session.execute(
                update(Dataset)
                .where(Dataset.owner_id == owner, Dataset.name == dataset)
                .values(next_run=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
    finally:
        database.dispose()


@contextlib.contextmanager
def dpp_stack(
    root: Path, public_key: str, run_env: dict[str, str] | None = None, **env: str
) -> Iterator[OnDpp]:
    """``python server.py`` on a SQLite registry under ``root``, handing pipelines to a real
    DPP installed in its own virtualenv (the test fails loudly without one), with ``env``
    added to the server's settings; stopped, with DPP, after the block."""
    try:
        venv = dpp_venv()
    except DppUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    deployment = DppDeployment(root / "dpp", venv)
    output = root / "output"
    settings = server_env(
        DATABASE_URL=f"sqlite:///{root}/registry.db",
        AUTH_PUBLIC_KEY=public_key,
        HOOK_SECRET=HOOK_SECRET,
        DPP_PIPELINES_DIR=str(deployment.root),
        OUTPUT_DIR=str(output),
        DATA_DIR=str(root / "data"),
        **env,
    )
    server = Server(settings, root)
    try:
        yield OnDpp(server, deployment, output, run_env=run_env)
    finally:
        server.stop()
        deployment.stop()
