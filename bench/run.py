"""specstore's benchmark (`make bench`).

specstore runs under gunicorn (2 sync workers) on a throw-away PostgreSQL holding
a registry of DATASETS datasets with 3 revisions each; wrk, a separate process,
drives each route for a few seconds per round. A minimal Flask app under the same
gunicorn settings is measured in the same run as the baseline, and every figure
is also given as a ratio to it (medians over the rounds: the machine is noisy).
Then status latency is measured at 1,000, 10,000 and 100,000 datasets, and the
workers' peak memory is read from /proc.

The table is printed and written to bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from specstore.db import Database  # noqa: E402
from specstore.models import Dataset, Revision  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.processes import children  # noqa: E402
from tests.support.server import Gunicorn  # noqa: E402
from tests.support.tokens import KeyPair  # noqa: E402

OWNERS = 100
HOOK_TOKEN = "bench-hook-token"  # noqa: S105
LUA = Path(__file__).parent / "lua"
SPEC = {
    "meta": {"version": 1, "ownerid": "%OWNER%", "owner": "Bench", "dataset": "%NAME%"},
    "inputs": [
        {
            "kind": "datapackage",
            "url": "http://files.bench/datapackage.json",
            "parameters": {
                "resource-mapping": {"gdp": "http://files.bench/gdp.csv"},
                "descriptor": {"name": "gdp", "resources": [{"name": "gdp", "path": "gdp.csv"}]},
            },
        }
    ],
    "processing": [{"input": "gdp", "output": "gdp", "tabulator": {"headers": 1}}],
    "outputs": [{"kind": "sqlite"}, {"kind": "zip", "parameters": {"out-file": "gdp.zip"}}],
}


def spec_for(owner: str, name: str) -> dict:
    text = json.dumps(SPEC).replace("%OWNER%", owner).replace("%NAME%", name)
    return json.loads(text)


def load_registry(url: str, start: int, stop: int) -> None:
    """Datasets start..stop-1 (owner-<i % OWNERS>/ds-<i>), 3 revisions each, the newest RUNNING;
    then VACUUM ANALYZE."""
    engine = create_engine(url)
    now = dt.datetime.now(dt.UTC)
    batch = 2000
    with engine.begin() as connection:
        for first in range(start, stop, batch):
            numbers = range(first, min(first + batch, stop))
            ids = connection.execute(
                insert(Dataset).returning(Dataset.id, sort_by_parameter_order=True),
                [
                    {
                        "owner_id": f"owner-{i % OWNERS}",
                        "name": f"ds-{i}",
                        "last_revision": 3,
                        "findability": "published",
                        "created": now,
                        "modified": now - dt.timedelta(seconds=i),
                    }
                    for i in numbers
                ],
            ).scalars()
            rows = []
            for i, dataset_id in zip(numbers, ids, strict=True):
                spec = spec_for(f"owner-{i % OWNERS}", f"ds-{i}")
                for revision in (1, 2, 3):
                    rows.append(
                        {
                            "dataset_id": dataset_id,
                            "revision": revision,
                            "spec": spec,
                            "state": "RUNNING" if revision == 3 else "SUCCEEDED",
                            "success": None if revision == 3 else True,
                            "logs": ["load: 3 rows"],
                            "errors": [],
                            "stats": {"count_of_rows": 3},
                            "pipelines": None,
                            "created": now,
                            "modified": now,
                        }
                    )
            connection.execute(insert(Revision), rows)
    # Measure the steady state: statistics up to date, no autovacuum starting mid-run.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def peak_memory_mib(server: Gunicorn) -> list[float]:
    """The peak resident memory (VmHWM) of each of the server's workers."""
    peaks = []
    for worker in children(server.process.pid):
        found = re.search(r"VmHWM:\s+(\d+) kB", worker.status)
        if found:
            peaks.append(int(found.group(1)) / 1024)
    return peaks


def wrk(url: str, seconds: int, connections: int, script: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(LUA / script),
            url,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    out = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def percentile(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": rate,
        "p50": percentile("50"),
        "p99": percentile("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--scaling", default="1000,10000,100000")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    args = parser.parse_args()

    keys = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="specstore-bench-"))
    postgres = PostgresServer()
    postgres.start()
    servers: list[Gunicorn] = []
    try:
        url = postgres.create_database("bench")
        Database(url).upgrade()
        started = time.monotonic()
        load_registry(url, 0, args.datasets)
        print(f"loaded {args.datasets} datasets x 3 revisions in {time.monotonic() - started:.1f}s")

        env = {
            "DATABASE_URL": url,
            "AUTH_PUBLIC_KEY": keys.public_pem,
            "HOOK_TOKEN": HOOK_TOKEN,
            "RUNNER_WORKERS": "0",
            "DPP_PIPELINES_DIR": str(work / "dpp"),
            "PUBLIC_URL": "http://specstore.bench/",
            "PROMETHEUS_MULTIPROC_DIR": str(work),
        }
        specstore = Gunicorn({**os.environ, **env}, work, workers=2)
        baseline = Gunicorn(
            {**os.environ, "BASELINE_DATABASE_URL": url}, work, workers=2, app="bench.baseline:app"
        )
        servers += [specstore, baseline]

        token = keys.token("owner-0")
        common = {"BENCH_DATASETS": str(args.datasets), "BENCH_OWNERS": str(OWNERS)}
        upload_body = json.dumps(spec_for("owner-0", "NAME")).replace('"NAME"', '"%s"')
        event_body = '{"pipeline_id": "%s", "event": "progress", "log": ["%s"]}'
        scenarios = {
            "status": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/status"}),
            "info": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/info"}),
            "revision/latest": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/latest"}),
            "listing of 50": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d?limit=50&n=%d"}),
            "upload, new dataset": (
                "post.lua",
                "/source/upload",
                {"BENCH_MODE": "new", "BENCH_BODY": upload_body, "BENCH_TOKEN": token},
            ),
            "upload, new revision": (
                "post.lua",
                "/source/upload",
                {"BENCH_MODE": "existing", "BENCH_BODY": upload_body, "BENCH_TOKEN": token},
            ),
            "update event": (
                "post.lua",
                f"/source/update?token={HOOK_TOKEN}",
                {"BENCH_MODE": "event", "BENCH_BODY": event_body},
            ),
        }
        floor = "floor: Flask + the status query"
        results: dict[str, list[dict]] = {name: [] for name in ["baseline", floor, *scenarios]}
        for round_number in range(args.rounds):
            salt = f"r{round_number}-{int(time.time())}"
            results["baseline"].append(
                wrk(
                    baseline.url + "/ping",
                    args.seconds,
                    args.connections,
                    "get.lua",
                    {**common, "BENCH_PATH": "/ping?o=%d&d=%d"},
                )
            )
            results[floor].append(
                wrk(
                    baseline.url + "/",
                    args.seconds,
                    args.connections,
                    "get.lua",
                    {**common, "BENCH_PATH": "/floor/owner-%d/ds-%d"},
                )
            )
            for name, (script, path, extra) in scenarios.items():
                measured = wrk(
                    specstore.url + path,
                    args.seconds,
                    args.connections,
                    script,
                    {**common, **extra, "BENCH_SALT": salt},
                )
                results[name].append(measured)
            print(f"round {round_number + 1} of {args.rounds} done")

        memory = peak_memory_mib(specstore)
        base_rps = [run["rps"] for run in results["baseline"]]
        rows = []
        for name, runs in results.items():
            ratios = [run["rps"] / base for run, base in zip(runs, base_rps, strict=True)]
            rows.append(
                (
                    name,
                    statistics.median(run["rps"] for run in runs),
                    statistics.median(run["p50"] for run in runs),
                    statistics.median(run["p99"] for run in runs),
                    statistics.median(ratios),
                    sum(run["non_2xx"] for run in runs),
                )
            )

        # Status latency as the registry grows, in a database of its own.
        growing = postgres.create_database("growing")
        Database(growing).upgrade()
        grown = Gunicorn({**os.environ, **env, "DATABASE_URL": growing}, work, workers=2)
        servers.append(grown)
        scaling = []
        loaded = 0
        for size in sorted(int(part) for part in args.scaling.split(",")):
            load_registry(growing, loaded, size)
            loaded = size
            runs = [
                wrk(
                    grown.url + "/",
                    args.seconds,
                    args.connections,
                    "get.lua",
                    {
                        "BENCH_DATASETS": str(size),
                        "BENCH_OWNERS": str(OWNERS),
                        "BENCH_PATH": "/source/owner-%d/ds-%d/status",
                    },
                )
                for _ in range(args.rounds)
            ]
            scaling.append(
                (
                    size,
                    {
                        key: statistics.median(run[key] for run in runs)
                        for key in ("rps", "p50", "p99")
                    },
                )
            )
    finally:
        for server in servers:
            server.stop()
        postgres.destroy()

    lines = [
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL 15; gunicorn 2 sync workers; wrk -t2 "
        f"-c{args.connections}, {args.seconds} s per run, {args.rounds} rounds, medians; "
        f"{args.datasets:,} datasets x 3 revisions.",
        "",
        "| route | requests/s | p50 ms | p99 ms | ratio to baseline | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rps, p50, p99, ratio, non_2xx in rows:
        lines.append(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {ratio:.2f} | {non_2xx} |")
    lines += [
        "",
        "| datasets in the registry | status requests/s | status p50 ms | status p99 ms |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size, measured in scaling:
        lines.append(
            f"| {size:,} | {measured['rps']:,.0f} | {measured['p50']:.2f} | {measured['p99']:.2f} |"
        )
    lines += [
        "",
        f"Peak memory per specstore worker (VmHWM): {', '.join(f'{m:.0f} MiB' for m in memory)}.",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
