"""What the API tests share: the spec they upload, how they upload it and post events as
the engines do, and what they read back from the store to check what was (not) kept."""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from specstore.hooks import credential
from specstore.store.database import Database
from specstore.store.models import Dataset, Revision, Setting

# The key the tests' servers derive each revision's hook credential from, and the single
# token of older releases, which the tests about the upgrade set.
HOOK_SECRET = "test-hook-secret"
HOOK_TOKEN = "test-hook-token"


SPEC: dict[str, Any] = {
    "meta": {
        "version": 1,
        "ownerid": "alice",
        "owner": "Alice",
        "dataset": "gdp",
        "findability": "published",
    },
    "inputs": [
        {
            "kind": "datapackage",
            "url": "http://data.example/gdp/datapackage.json",
            "parameters": {
                "resource-mapping": {"gdp": "http://data.example/gdp/gdp.csv"},
                "descriptor": {"name": "gdp"},
            },
        }
    ],
    "processing": [
        {"input": "gdp", "output": "gdp-clean", "tabulator": {"headers": 2, "sheet": 1}}
    ],
    "outputs": [{"kind": "sqlite"}, {"kind": "zip", "parameters": {"out-file": "gdp.zip"}}],
    "schedule": "every 1d",
}


def make_spec(ownerid: str = "alice", dataset: str = "gdp", **meta: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["meta"].update(ownerid=ownerid, dataset=dataset, **meta)
    return spec


def empty_tables(database: Database) -> None:
    with database.transaction(write=True) as session:
        for model in (Revision, Dataset, Setting):
            session.execute(delete(model))


def database_of(app: Flask) -> Database:
    return app.extensions["specstore.components"].database


def stored_revisions(app: Flask) -> list[tuple[str, str, int, str]]:
    """Every stored revision as (ownerid, dataset, revision, state), in order."""
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Dataset.owner_id, Dataset.name, Revision.revision, Revision.state)
            .join(Revision, Revision.dataset_id == Dataset.id)
            .order_by(Dataset.owner_id, Dataset.name, Revision.revision)
        )
        return [tuple(row) for row in rows]


def stored_plan(app: Flask, owner_id: str, dataset: str, revision: int | None = None) -> Any:
    """The pipelines stored as planned for a revision (the dataset's newest by default)."""
    with database_of(app).transaction() as session:
        query = (
            select(Revision.pipelines)
            .join(Dataset, Revision.dataset_id == Dataset.id)
            .where(Dataset.owner_id == owner_id, Dataset.name == dataset)
        )
        if revision is None:
            query = query.where(Revision.revision == Dataset.last_revision)
        else:
            query = query.where(Revision.revision == revision)
        return session.scalar(query)


def stored_row_id(app: Flask, owner_id: str, dataset: str, revision: int) -> int:
    """A revision's row id, as the store names it (``RevisionRef.row_id``)."""
    with database_of(app).transaction() as session:
        return session.scalar(
            select(Revision.id)
            .join(Dataset, Revision.dataset_id == Dataset.id)
            .where(
                Dataset.owner_id == owner_id,
                Dataset.name == dataset,
                Revision.revision == revision,
            )
        )


def stored_datasets(app: Flask) -> list[tuple[str, str, int]]:
    with database_of(app).transaction() as session:
        rows = session.execute(
            select(Dataset.owner_id, Dataset.name, Dataset.last_revision).order_by(Dataset.id)
        )
        return [tuple(row) for row in rows]


def upload(
    client: FlaskClient, spec: Any, token: str | None, content_type: str = "application/json"
) -> Any:
    headers = {"Auth-Token": token} if token else {}
    if isinstance(spec, bytes | str):
        return client.post("/source/upload", data=spec, headers=headers, content_type=content_type)
    return client.post("/source/upload", json=spec, headers=headers)


def hook_credential(owner_id: str, dataset: str, revision: int) -> str:
    """The credential the tests' servers give the hooks of that revision."""
    return credential(HOOK_SECRET, owner_id, dataset, revision)


def hook_query(owner_id: str, dataset: str, revision: int) -> dict[str, Any]:
    """What a hook URL of that revision carries: its dataset, its number, its credential."""
    return {
        "dataset": f"{owner_id}/{dataset}",
        "revision": revision,
        "token": hook_credential(owner_id, dataset, revision),
    }


_CREDENTIAL = object()


def post_event(
    client: FlaskClient,
    payload: Any,
    token: Any = _CREDENTIAL,
    revision: int | None = None,
    **query: Any,
):
    """Post ``payload`` as the engine does, to the URL of a hook of revision ``revision``
    (the dataset's newest, unless given) of the dataset the payload names: with that
    revision's credential, unless ``token`` is given (None: none)."""
    pipeline = (
        payload.get("pipeline_id", payload.get("pipeline")) if isinstance(payload, dict) else None
    )
    owner_id, _, dataset = str(pipeline or "").removeprefix("./").partition(":")[0].partition("/")
    if revision is None:
        numbers = [
            row[2] for row in stored_revisions(client.application) if row[:2] == (owner_id, dataset)
        ]
        revision = max(numbers, default=1)
    hook = hook_query(owner_id, dataset, revision)
    if token is not _CREDENTIAL:
        hook.pop("token")
        if token is not None:
            hook["token"] = token
    return client.post("/source/update", json=payload, query_string={**hook, **query})


def error_body(status: int, message: str) -> dict[str, Any]:
    """The body of an error answer: ``status`` with ``message``."""
    return {
        "success": False,
        "id": None,
        "errors": [message],
        "error": {"status": status, "message": message},
    }


def status_of(client, owner="alice", dataset="gdp", token=None):
    """What asks for the dataset's status (for :func:`tests.support.pipelines.wait_for`)."""
    headers = {"Auth-Token": token} if token else {}
    return lambda: client.get(f"/source/{owner}/{dataset}/status", headers=headers).get_json()


def write_spec(path, spec):
    """``spec`` written to ``path`` as YAML, or JSON for a ``.json`` path: its path."""
    path.write_text(yaml.safe_dump(spec) if path.suffix != ".json" else json.dumps(spec))
    return str(path)
