"""specstore under gunicorn's workers: hostile callers never stall them, bodies over the
limit are refused however they are sent, metrics add up across workers, and a burst of
uploads (SIGKILL in the middle of one) loses nothing answered."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from specstore.store.database import Database
from specstore.store.models import Dataset, Revision
from specstore.validation import MAX_YAML_BYTES
from tests.support.api import (
    error_body,
    make_spec,
)
from tests.support.metrics import STATUS_ROUTE, requests_of, samples
from tests.support.pipelines import carrying_its_package, example_spec, pipelines_for_dpp, wait_for
from tests.support.server import Gunicorn, server_env


def test_hostile_yaml_never_stalls_the_workers(gunicorn, keypair):
    """Four clients send pathological YAML as fast as they can to gunicorn's two workers
    (a flow sequence just under the byte limit, one just over, an alias bomb); meanwhile
    every status request is answered within a second, and every answer is JSON."""
    server = gunicorn()
    token = keypair.token("alice")
    requests.post(
        server.url + "/source/upload", json=make_spec(), headers={"Auth-Token": token}, timeout=10
    ).raise_for_status()
    bodies = [
        b"meta: [" + b"1, " * (MAX_YAML_BYTES // 3 - 10) + b"1]",
        b"meta: [" + b"1, " * (MAX_YAML_BYTES // 3 + 10) + b"1]",
        b"a: &a [x, x, x, x, x, x, x, x, x]\n"
        + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}]\n".encode()
            for i in range(9)
        ),
    ]
    stop = threading.Event()
    answers: list[tuple[int, str]] = []
    slowest = 0.0

    def attack(body: bytes) -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(
                server.url + "/source/upload",
                data=body,
                headers={"Auth-Token": token, "Content-Type": "application/yaml"},
                timeout=60,
            )
            answers.append((response.status_code, response.headers.get("Content-Type", "")))

    attackers = [threading.Thread(target=attack, args=(bodies[i % 3],)) for i in range(4)]
    for attacker in attackers:
        attacker.start()
    try:
        session = requests.Session()
        finish = time.monotonic() + 8
        while time.monotonic() < finish:
            started = time.monotonic()
            status = session.get(server.url + "/source/alice/gdp/status", timeout=30)
            slowest = max(slowest, time.monotonic() - started)
            assert status.status_code == 200
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join()
    assert slowest < 1.0, f"a status request took {slowest:.2f} s"
    assert answers and {status for status, _ in answers} <= {400, 413}
    assert {kind for _, kind in answers} == {"application/json"}


@pytest.mark.parametrize("server_kind", ["werkzeug", "gunicorn"])
def test_a_body_over_the_limit_is_413_however_it_is_sent(
    server_kind, gunicorn, start_server, database_url, keypair, tmp_path
):
    env = {"MAX_CONTENT_LENGTH": "2000", "BODY_TIMEOUT": "2"}
    if server_kind == "gunicorn":
        server = gunicorn(**env)
    else:
        server = start_server(
            DATABASE_URL=f"sqlite:///{tmp_path}/werkzeug.db",
            AUTH_PUBLIC_KEY=keypair.public_pem,
            RUNNER_WORKERS="0",
            **env,
        )
    token = keypair.token("alice")
    # A private spec whose findability comes after a large field: cut at the limit, it
    # would have been stored as published.
    spec = make_spec(dataset="cut")
    spec["meta"] = {"ownerid": "alice", "dataset": "cut", "owner": "x" * 3000}
    spec["meta"]["findability"] = "private"
    body = json.dumps(spec).encode()

    chunked = _raw_request(
        server.url, _head(token, "Transfer-Encoding: chunked\r\n"), _chunked(body)
    )
    assert chunked == (
        413,
        error_body(413, "the body is larger than 2000 bytes (MAX_CONTENT_LENGTH)"),
    )
    declared = _raw_request(server.url, _head(token, f"Content-Length: {len(body)}\r\n"), [body])
    assert declared[0] == 413
    # A Content-Length that says less than is sent: only what it says is the body.
    lying = _raw_request(server.url, _head(token, "Content-Length: 40\r\n"), [body])
    assert lying[0] == 400
    # One that says more than ever comes: 408 when the body timeout passes, not a stall.
    started = time.monotonic()
    short = _raw_request(server.url, _head(token, "Content-Length: 1500\r\n"), [body[:100]])
    assert short == (408, error_body(408, "the body did not arrive within 2 s"))
    assert time.monotonic() - started < 15
    # Dripped under the limit: whole, or not at all.
    small = json.dumps(make_spec(dataset="dripped")).encode()
    dripped = _raw_request(
        server.url, _head(token, "Transfer-Encoding: chunked\r\n"), _chunked(small, 100), 0.05
    )
    assert dripped[0] == 200
    status = requests.get(server.url + "/source/alice/cut/status", timeout=10)
    assert status.status_code == 404


def test_metrics_add_up_every_gunicorn_worker(gunicorn, tmp_path, keypair):
    server = gunicorn(workers=4, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    requests.post(
        server.url + "/source/upload",
        json=make_spec(),
        headers={"Auth-Token": keypair.token("alice")},
        timeout=10,
    ).raise_for_status()
    session = requests.Session()
    for _ in range(40):
        session.get(server.url + "/source/alice/gdp/status", timeout=10)
    scrapes = [samples(requests.get(server.url + "/metrics", timeout=10).text) for _ in range(4)]
    assert {requests_of(scrape, STATUS_ROUTE) for scrape in scrapes} == {40}
    assert all(s[("specstore_revisions", (("state", "LOADED"),))] == 1 for s in scrapes)


def test_gunicorn_removes_the_metrics_folder_it_made(tmp_path, database_url, keypair):
    env = server_env(DATABASE_URL=database_url, RUNNER_WORKERS="0")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    folders = Path(tempfile.gettempdir())
    before = set(folders.glob("specstore-metrics-*"))
    server = Gunicorn(env, tmp_path, workers=1)
    try:
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 200
        made = set(folders.glob("specstore-metrics-*")) - before
        assert len(made) == 1 and any(next(iter(made)).iterdir())
    finally:
        server.stop()
    assert not next(iter(made)).exists()


def test_50_concurrent_uploads_through_4_gunicorn_workers(
    gunicorn, keypair, example_data, database_url, tmp_path
):
    dpp_root = tmp_path / "dpp"
    server = gunicorn(
        workers=4, DPP_PIPELINES_DIR=str(dpp_root), PUBLIC_URL="http://specstore.test/"
    )
    token = keypair.token("alice")
    barrier = threading.Barrier(UPLOADS)

    def one(index: int) -> requests.Response:
        spec = carrying_its_package(example_data, dataset=f"load-{index % DATASETS}")
        barrier.wait()
        return _post(server.url, spec, token)

    started = time.monotonic()
    with ThreadPoolExecutor(UPLOADS) as pool:
        responses = list(pool.map(one, range(UPLOADS)))
    elapsed = time.monotonic() - started

    assert [response.status_code for response in responses] == [200] * UPLOADS
    per_dataset = UPLOADS // DATASETS
    by_dataset: dict[str, list[int]] = defaultdict(list)
    for response in responses:
        body = response.json()
        by_dataset[body["id"]].append(body["revision"])
    assert {name: sorted(numbers) for name, numbers in by_dataset.items()} == {
        f"alice/load-{index}": list(range(1, per_dataset + 1)) for index in range(DATASETS)
    }
    assert _stored(database_url) == {
        f"load-{index}": list(range(1, per_dataset + 1)) for index in range(DATASETS)
    }
    written = pipelines_for_dpp(dpp_root)
    assert sorted(written) == [f"load-{index}" for index in range(DATASETS)]
    assert {details["specstore-revision"] for details in written.values()} == {per_dataset}
    # The newest revision of each waits for DPP; the older ones never run.
    assert _states(database_url) == {
        number: ("REGISTERED" if number == per_dataset else "FAILED")
        for number in range(1, per_dataset + 1)
    }
    print(f"\n{UPLOADS} uploads through 4 workers in {elapsed:.2f}s")


def test_sigkill_in_the_middle_of_a_burst_loses_nothing_answered(
    gunicorn, keypair, example_data, database_url, tmp_path
):
    env = {"RUNNER_WORKERS": "1"}
    server = gunicorn(workers=4, **env)
    token = keypair.token("alice")
    answered: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        for index in range(40):
            if stop.is_set():
                return
            spec = example_spec(example_data, dataset=f"burst-{(worker + index) % 3}")
            try:
                response = _post(server.url, spec, token)
            except requests.RequestException:
                return
            if response.status_code == 200:
                with lock:
                    answered.append(response.json())

    threads = [threading.Thread(target=burst, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(answered) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(answered) >= 20

    stored = _stored(database_url)
    for body in answered:
        name = body["id"].split("/", 1)[1]
        assert body["revision"] in stored[name], body
    for name, numbers in stored.items():
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers)

    # After a restart every revision reaches a final state: nothing stays RUNNING.
    restarted = gunicorn(workers=4, **env)
    for name in stored:
        status = wait_for(
            lambda name=name: requests.get(
                f"{restarted.url}/source/alice/{name}/status", timeout=10
            ).json(),
            timeout=120,
        )
        assert status["state"] == "SUCCEEDED", (name, status)
    database = Database(database_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with database.transaction() as session:
                unfinished = session.scalars(
                    select(Revision.state).where(
                        Revision.state.in_(("LOADED", "REGISTERED", "RUNNING"))
                    )
                ).all()
            if not unfinished:
                break
            time.sleep(0.5)
        assert unfinished == []
    finally:
        database.dispose()


UPLOADS = 50


DATASETS = 5


def _post(url: str, spec: dict, token: str) -> requests.Response:
    return requests.post(
        url + "/source/upload", json=spec, headers={"Auth-Token": token}, timeout=60
    )


def _states(database_url: str) -> dict[int, str]:
    """Each revision number's state, the same for every dataset (else a failure)."""
    database = Database(database_url)
    try:
        with database.transaction() as session:
            rows = session.execute(select(Revision.revision, Revision.state)).all()
    finally:
        database.dispose()
    states: dict[int, set[str]] = defaultdict(set)
    for number, state in rows:
        states[number].add(state)
    assert all(len(found) == 1 for found in states.values()), states
    return {number: found.pop() for number, found in states.items()}


def _stored(database_url: str) -> dict[str, list[int]]:
    database = Database(database_url)
    try:
        with database.transaction() as session:
            rows = session.execute(
                select(Dataset.name, Revision.revision, Dataset.last_revision)
                .join(Revision, Revision.dataset_id == Dataset.id)
                .order_by(Dataset.name, Revision.revision)
            ).all()
    finally:
        database.dispose()
    found: dict[str, list[int]] = defaultdict(list)
    for name, number, last in rows:
        found[name].append(number)
        assert last >= number
    return dict(found)


def _raw_request(server_url: str, head: bytes, body_parts: list[bytes], pause: float = 0.0):
    """Send a hand-made request; the status and body of the answer (read as far as the
    answer says it goes: the server may keep the connection open)."""
    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head)
        for part in body_parts:
            connection.sendall(part)
            time.sleep(pause)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
        head_text, _, body = answer.partition(b"\r\n\r\n")
        headers = head_text.lower()
        if b"transfer-encoding: chunked" in headers:
            while not body.endswith(b"0\r\n\r\n"):
                body += connection.recv(65536)
            body = _dechunk(body)
        else:
            length = int(headers.split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += connection.recv(65536)
    return int(head_text.split(b" ", 2)[1]), json.loads(body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def _chunked(body: bytes, size: int = 500) -> list[bytes]:
    parts = [
        f"{len(body[i : i + size]):x}\r\n".encode() + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    ]
    return [*parts, b"0\r\n\r\n"]


def _head(token: str, extra: str) -> bytes:
    return (
        "POST /source/upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nAuth-Token: {token}\r\n{extra}\r\n"
    ).encode()
