"""Where the time of a read and of an upload goes, in one process (the WSGI app called
directly: no HTTP, no gunicorn), on a throw-away PostgreSQL.

* ``status``, whole and with one layer taken off at a time (a layer's cost is what the
  route saves without it), a listing of 50 whole and its answer encoded by the app's JSON
  provider and by Flask's own, then the status query as the store runs it (compiled once, on
  the driver's cursor), through SQLAlchemy's execute, and by psycopg2 alone, the
  floor's way. Metrics are kept as under gunicorn (prometheus-client's
  multi-process files), the access log written to a file as gunicorn's standard error.
* an upload of the DataHub client's spec shape in DPP mode, whole, then each of its
  steps alone.

Run by ``make bench`` (``bench/run.py``), or alone: ``python bench/layers.py``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REQUESTS = 2000
ROUNDS = 5
LAYER_ROUNDS = 9


def _environ(path: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "bench",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def microseconds_per_call(call: Callable[[int], object], requests: int = REQUESTS) -> float:
    """The median over ROUNDS of the mean time of one call, in microseconds."""
    rounds = []
    for number in range(ROUNDS):
        started = time.perf_counter()
        for index in range(number * requests, (number + 1) * requests):
            call(index)
        rounds.append((time.perf_counter() - started) / requests * 1e6)
    return statistics.median(rounds)


def cpu_per_call(call: Callable[[int], object], requests: int = REQUESTS) -> tuple[float, float]:
    """The process's CPU time per call in microseconds, its own (user) and the kernel's on
    its behalf (system: files, folders, sockets), over ``requests`` calls."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for index in range(requests):
        call(index)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        (after.ru_utime - before.ru_utime) / requests * 1e6,
        (after.ru_stime - before.ru_stime) / requests * 1e6,
    )


@contextlib.contextmanager
def without(app, name: str) -> Iterator[None]:
    """The app with the after-request function ``name`` (and its before-request
    partner) taken off for the block."""
    before = {key: list(value) for key, value in app.before_request_funcs.items()}
    after = {key: list(value) for key, value in app.after_request_funcs.items()}
    try:
        for functions in app.after_request_funcs.values():
            functions[:] = [f for f in functions if name not in getattr(f, "__qualname__", "")]
        if name == "_log_request":
            for functions in app.before_request_funcs.values():
                functions[:] = [f for f in functions if f.__name__ != "_start_request"]
        yield
    finally:
        app.before_request_funcs.clear()
        app.before_request_funcs.update(before)
        app.after_request_funcs.clear()
        app.after_request_funcs.update(after)


def measure(url: str, datasets: int, owners: int) -> list[tuple[str, float]]:
    """(what, microseconds per request): status whole and without each layer, the listing,
    and the status query three ways."""
    import psycopg2
    from flask.json.provider import DefaultJSONProvider
    from sqlalchemy.engine import make_url

    from specstore import metrics
    from specstore.app import create_app
    from specstore.store.database import Database
    from specstore.store.revisions import Revisions
    from specstore.web import operations, representations

    work = Path(tempfile.mkdtemp(prefix="specstore-layers-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work)
    access = logging.getLogger("specstore.access")
    access.handlers[:] = [logging.FileHandler(work / "access.log")]
    access.propagate = False
    app = create_app(database_url=url, runner_workers=0, upload_rate_limit=None)

    def path(index: int) -> str:
        number = index % datasets
        return f"/source/owner-{number % owners}/ds-{number}/status"

    def get(environ: dict) -> None:
        body = app(environ, lambda status, headers: None)
        b"".join(body)
        body.close()

    def status(index: int) -> None:
        get(_environ(path(index)))

    status(0)
    layers: list[tuple[str, Callable[[], contextlib.AbstractContextManager]]] = [
        ("status, whole", contextlib.nullcontext),
        ("without the access log line", lambda: mock.patch.object(access, "disabled", True)),
        (
            "without the Prometheus counters",
            lambda: mock.patch.object(metrics, "count_request", lambda *_: None),
        ),
        (
            "without a request id made up",
            lambda: mock.patch.object(operations, "new_request_id", str),
        ),
        ("without all three (and the request's start time)", lambda: without(app, "_log_request")),
        ("without CORS", lambda: without(app, "cors_after_request")),
    ]
    # Round by round, each layer off in turn: a drift of the machine's speed falls on all.
    rounds: dict[str, list[float]] = {label: [] for label, _ in layers}
    for number in range(LAYER_ROUNDS):
        for label, layer in layers:
            with layer():
                started = time.perf_counter()
                for index in range(number * REQUESTS, (number + 1) * REQUESTS):
                    status(index)
                rounds[label].append((time.perf_counter() - started) / REQUESTS * 1e6)
    found = [(label, statistics.median(rounds[label])) for label, _ in layers]

    revisions = app.extensions["specstore.components"].store.revisions

    def listing(index: int) -> None:
        get({**_environ(f"/source/owner-{index % owners}"), "QUERY_STRING": "limit=50"})

    found.append(("listing of 50, whole", microseconds_per_call(listing)))
    page = representations.listing(revisions.list_datasets("owner-0", False, 50, 0))
    flasks = DefaultJSONProvider(app)
    flasks.sort_keys = False
    for label, provider in (("orjson, the app's", app.json), ("Flask's own", flasks)):
        found.append(
            (
                f"its answer encoded by {label} JSON provider",
                microseconds_per_call(lambda _, provider=provider: provider.dumps(page)),
            )
        )

    def store_read(index: int) -> None:
        number = index % datasets
        revisions.revision(f"owner-{number % owners}", f"ds-{number}", view="status")

    found.append(
        (
            "the status query as the store runs it (the driver's cursor)",
            microseconds_per_call(store_read),
        )
    )
    plain = Revisions(Database(url, fast_path=False))

    def sqlalchemy_read(index: int) -> None:
        number = index % datasets
        plain.revision(f"owner-{number % owners}", f"ds-{number}", view="status")

    found.append(
        (
            "the same query through SQLAlchemy's execute (DATABASE_FAST_PATH=off)",
            microseconds_per_call(sqlalchemy_read),
        )
    )
    plain.database.dispose()

    parts = make_url(url)
    connection = psycopg2.connect(
        host=parts.host, port=parts.port, user=parts.username, dbname=parts.database
    )
    connection.autocommit = True
    cursor = connection.cursor()
    query = (
        "SELECT d.owner_id, d.name, d.findability, r.revision, r.findability, r.trigger, "
        "r.state, r.errors, r.logs, r.modified, r.stats FROM datasets d JOIN revisions r "
        "ON r.dataset_id = d.id AND r.revision = d.last_revision "
        "WHERE d.owner_id = %s AND d.name = %s"
    )

    def bare_query(index: int) -> None:
        number = index % datasets
        cursor.execute(query, (f"owner-{number % owners}", f"ds-{number}"))
        cursor.fetchone()

    found.append(("the same query by psycopg2 alone", microseconds_per_call(bare_query)))
    connection.close()
    app.extensions["specstore.components"].close()
    return found


UPLOADS = 400


def upload_costs(postgres: Any, spec_for: Callable[[str, str], dict]) -> list[tuple[str, float]]:
    """(what, microseconds per upload): an upload of a new dataset (20 owners in turn),
    whole, then each step alone, in DPP mode, on a database of its own on ``postgres``: the
    first upload starts the engine's sweep in this process, and it finds nothing left
    waiting by other runs to take up meanwhile."""
    import json

    from jsonschema.validators import validator_for

    from specstore.app import create_app
    from specstore.events import REGISTERED
    from specstore.pipelines.dpp.files import DppPipelines
    from specstore.pipelines.resources import given_descriptor
    from specstore.store.database import Database
    from specstore.store.records import Handover
    from specstore.validation import SPEC_SCHEMA, load_schema, parse_document, spec_validator
    from tests.support.tokens import KeyPair

    url = postgres.create_database("uploads")
    Database(url).upgrade()
    keys = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="specstore-layers-"))
    app = create_app(
        database_url=url,
        runner_workers=0,
        upload_rate_limit=None,
        auth_public_key=keys.public_pem,
        dpp_pipelines_dir=str(work / "dpp"),
        output_dir=str(work / "output"),
        hook_secret="layers",  # noqa: S106
    )
    owners = 20
    tokens = [keys.token(f"owner-{number}") for number in range(owners)]

    def body(index: int, prefix: str) -> bytes:
        owner = index % owners
        return json.dumps(spec_for(f"owner-{owner}", f"{prefix}-{index}")).encode()

    def upload(index: int) -> None:
        data = body(index, "whole")
        environ = {
            **_environ("/source/upload"),
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "HTTP_AUTH_TOKEN": tokens[index % owners],
            "wsgi.input": io.BytesIO(data),
        }
        answered = []
        result = app(environ, lambda status, headers: answered.append(status))
        b"".join(result)
        result.close()
        assert answered == ["200 OK"], answered

    service = app.extensions["specstore"]
    planner = service.planner
    schema = load_schema(SPEC_SCHEMA)
    pure_python = validator_for(schema)(schema)
    spec = spec_for("owner-0", "steps")
    data = body(0, "steps")
    descriptor, checked = given_descriptor(spec), planner.check(spec)
    plan = planner.plan(spec, 1, descriptor, hooks=["h"], resources=checked.resources)
    pipelines = DppPipelines(work / "steps")

    def write(index: int) -> None:
        owner = f"owner-{index % owners}"
        pipelines.write(owner, f"d-{index}", {f"{owner}/d-{index}": plan.pipelines[plan.main_id]})

    handover = Handover(REGISTERED, pipelines=plan.pipelines, supersedes=True)

    def store(index: int) -> None:
        with service.revisions.upload(spec_for(f"owner-{index % owners}", f"store-{index}")) as up:
            up.record(handover)

    whole = microseconds_per_call(upload, UPLOADS)
    user, system = cpu_per_call(lambda index: upload(UPLOADS * ROUNDS + index), UPLOADS)
    found = [
        ("upload, whole", whole),
        ("its CPU in the process (user time)", user),
        ("its CPU in the kernel (system time: files, folders, the database's socket)", system),
        (
            "the token's RS256 signature checked",
            microseconds_per_call(lambda index: service.verifier.verify(tokens[index % owners])),
        ),
        (
            "the body parsed and checked against the JSON Schema",
            microseconds_per_call(
                lambda index: spec_validator().check(parse_document(data, "application/json")),
                UPLOADS,
            ),
        ),
        (
            "the same spec checked by jsonschema alone, in pure Python (not done)",
            microseconds_per_call(lambda index: list(pure_python.iter_errors(spec)), UPLOADS // 4),
        ),
        (
            "the checks beyond the schema, the resources it carries planned",
            microseconds_per_call(lambda index: planner.check(spec), UPLOADS),
        ),
        (
            "its pipelines planned",
            microseconds_per_call(
                lambda index: planner.plan(
                    spec, 1, descriptor, hooks=["h"], resources=checked.resources
                ),
                UPLOADS,
            ),
        ),
        (
            "the dataset's pipeline file written",
            microseconds_per_call(write, UPLOADS),
        ),
        (
            "stored and recorded as handed over: one transaction",
            microseconds_per_call(store, UPLOADS),
        ),
    ]
    app.extensions["specstore.components"].close()
    return found


def main() -> int:
    from bench.registry import OWNERS, load_registry, spec_for
    from specstore.store.database import Database
    from tests.support.postgres import PostgresServer

    postgres = PostgresServer()
    postgres.start()
    try:
        url = postgres.create_database("layers")
        Database(url).upgrade()
        load_registry(url, 0, 10_000)
        for what, micros in measure(url, 10_000, OWNERS) + upload_costs(postgres, spec_for):
            print(f"{what}: {micros:,.0f} µs")
    finally:
        postgres.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
