"""specstore's benchmark (`make bench`).

specstore runs under gunicorn (2 sync workers, DPP mode: uploads plan and write
pipeline files) on a throw-away PostgreSQL (the tests' settings: fsync and
synchronous_commit off, so its commits do not wait for the disk) holding a registry of
DATASETS datasets with 3 revisions each; wrk, a separate process, drives each route for
SECONDS per run, at each concurrency (-c8 and -c32), for ROUNDS rounds. Uploads send the DataHub
client's spec shape (its data package inline, with README and schemas), each owner's
with the owner's token: new revisions of the registry's datasets, and new datasets of
owners of their own (the registry the reads ask about stays as it was loaded); one more
upload run sends specs that need a fetch to be planned
from a host that does not resolve. A minimal Flask app under the same gunicorn settings
is the baseline, run just before and just after every route's run, and every figure is
also given as a ratio to it (to the mean of those two runs; medians over the rounds: the
machine is noisy, and its speed drifts within minutes). Three mixed runs have 64
connections read status while 8 upload: polling (each waits 100 ms after an answer),
asking again at once, and polling through nginx (bench/nginx.py), the buffering proxy
docs/how-to/production.md puts in front of the workers. The uploads run once more, with the
baseline, on 4 sync workers (what the same code does when the workers' waits no longer leave the
cores idle; each run's "cores busy" is its requests/s times its CPU per request over the
cores). Then status latency is measured at 1,000,
10,000 and 100,000 datasets, the workers' peak memory is read from /proc, and
bench/layers.py says where the time of a status and of an upload goes.

The tables are printed and written to bench/results.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import layers  # noqa: E402
from bench.nginx import Nginx  # noqa: E402
from bench.registry import CLIENT_SPEC, OWNERS, load_registry, spec_for  # noqa: E402
from specstore.hooks import credential  # noqa: E402
from specstore.store.database import Database  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.processes import children  # noqa: E402
from tests.support.server import Gunicorn  # noqa: E402
from tests.support.tokens import KeyPair  # noqa: E402

HOOK_SECRET = "bench-hook-secret"  # noqa: S105
POLLED = "/source/owner-0/ds-0/status"  # the dataset a poller asks about with its ETag
# The mixed runs: (how many ms each reader waits after an answer, a front end polling, or
# none: each asks again at once, as many requests as the server can take; whether the
# requests go through nginx, the buffering proxy docs/how-to/production.md puts in
# front of the workers).
MIXED = {
    "64 polling": (100, False),
    "64 at once": (0, False),
    "64 polling, behind nginx": (100, True),
}
LUA = Path(__file__).parent / "lua"
# No descriptor, and a host that does not resolve: planning it needs a fetch that fails.
UNREACHABLE_SPEC = {
    "meta": {"version": 1, "ownerid": "%OWNER%", "owner": "Bench", "dataset": "%NAME%"},
    "inputs": [
        {"kind": "datapackage", "url": "http://rawstore.unreachable.invalid/datapackage.json"}
    ],
    "outputs": [{"kind": "sqlite"}],
}
# What the issue this benchmark answers asks of each route, as a ratio to the baseline at -c8.
# Uploads wait (on the dataset's pipeline file reaching the disk, on PostgreSQL) and leave
# the cores partly idle with two sync workers: these routes run once more, with the
# baseline, on this many sync workers, to show what the same code does with the cores full.
WIDER_WORKERS = 4
WIDER = ("upload, new dataset", "upload, new revision")
TARGETS = {
    "upload, new dataset": 0.10,
    "upload, new revision": 0.10,
    "update event": 0.25,
    "status": 0.42,
    "info": 0.38,
    "listing of 50": 0.25,
}


def body_template(template: dict) -> str:
    """The spec's JSON with ``%s`` for its owner and its name, in that order."""
    text = json.dumps(template).replace("%", "%%")
    assert text.index("%%OWNER%%") < text.index("%%NAME%%")
    return text.replace('"%%OWNER%%"', '"%s"').replace('"%%NAME%%"', '"%s"')


def peak_memory_mib(server: Gunicorn) -> list[float]:
    """The peak resident memory (VmHWM) of each of the server's workers."""
    peaks = []
    for worker in children(server.process.pid):
        found = re.search(r"VmHWM:\s+(\d+) kB", worker.status)
        if found:
            peaks.append(int(found.group(1)) / 1024)
    return peaks


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU time used by the specstore (or baseline) server's workers, by PostgreSQL's
    processes, and by wrk, between two readings."""

    def __init__(self, postgres: PostgresServer) -> None:
        pid_file = postgres.data / "postmaster.pid"
        self.postmaster = int(pid_file.read_text().split()[0])

    def reading(self, server: Gunicorn) -> dict[str, dict[int, float]]:
        workers = [child.pid for child in children(server.process.pid)]
        database = [self.postmaster, *(child.pid for child in children(self.postmaster))]
        return {
            "server": {pid: cpu_seconds(pid) for pid in workers},
            "postgres": {pid: cpu_seconds(pid) for pid in database},
            "wrk": {
                0: resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
            },
        }

    def used(self, before: dict, server: Gunicorn) -> dict[str, float]:
        after = self.reading(server)
        return {
            part: sum(seconds - before[part].get(pid, 0.0) for pid, seconds in after[part].items())
            for part in after
        }


def start_wrk(
    url: str, seconds: int, connections: int, script: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(LUA / script),
            url,
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wrk_result(process: subprocess.Popen[str], seconds: int) -> dict:
    out, err = process.communicate(timeout=seconds + 60)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"timeout (\d+)", out)

    def percentile(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": rate,
        "requests": total,
        "p50": percentile("50"),
        "p99": percentile("99"),
        "failed": (int(errors.group(1)) if errors else 0)
        + (int(timeouts.group(1)) if timeouts else 0),
    }


def wrk(
    url: str,
    seconds: int,
    connections: int,
    script: str,
    env: dict[str, str],
    meter: tuple[CpuMeter, Gunicorn] | None = None,
) -> dict:
    """One wrk run; with ``meter``, also the CPU microseconds per request the server's
    workers, PostgreSQL and wrk used."""
    before = meter[0].reading(meter[1]) if meter else None
    result = wrk_result(start_wrk(url, seconds, connections, script, env), seconds)
    if meter:
        used = meter[0].used(before, meter[1])
        result["cpu"] = {part: used[part] / result["requests"] * 1e6 for part in used}
    return result


def busy(run: dict) -> float:
    """The share of the machine's cores a run kept busy: requests/s times the CPU a
    request cost in all (server, PostgreSQL, wrk)."""
    return run["rps"] * sum(run["cpu"].values()) / 1e6 / (os.cpu_count() or 1)


def baseline_run(
    baseline: Gunicorn, seconds: int, level: int, common: dict[str, str], meter: CpuMeter
) -> dict:
    """One wrk run of the baseline's route."""
    return wrk(
        baseline.url + "/ping",
        seconds,
        level,
        "get.lua",
        {**common, "BENCH_PATH": "/ping?o=%d&d=%d"},
        (meter, baseline),
    )


def wider_runs(
    args: argparse.Namespace,
    env: dict[str, str],
    work: Path,
    url: str,
    meter: CpuMeter,
    level: int,
    common: dict[str, str],
    scenarios: dict,
    servers: list[Gunicorn],
) -> dict[str, list[dict]]:
    """The WIDER routes and the baseline, each round, on WIDER_WORKERS sync workers."""
    specstore = Gunicorn({**os.environ, **env}, work, workers=WIDER_WORKERS)
    baseline = Gunicorn(
        {**os.environ, "BASELINE_DATABASE_URL": url},
        work,
        workers=WIDER_WORKERS,
        app="bench.baseline:app",
    )
    servers += [specstore, baseline]
    runs: dict[str, list[dict]] = {"baseline": [], **{name: [] for name in WIDER}}

    def measure(name: str, salt: str) -> dict:
        script, path, extra = scenarios[name]
        return wrk(
            specstore.url + path,
            args.seconds,
            level,
            script,
            {**common, **extra, "BENCH_SALT": salt},
            (meter, specstore),
        )

    for round_number in range(args.rounds):
        salt = f"wider-{round_number}-{int(time.time())}"
        bases, measured = bracketed(
            functools.partial(baseline_run, baseline, baseline_seconds(args), level, common, meter),
            [(name, functools.partial(measure, name, salt)) for name in WIDER],
        )
        runs["baseline"] += bases
        for name, run in measured:
            runs[name].append(run)
    return runs


def baseline_seconds(args: argparse.Namespace) -> int:
    """How long each of the baseline's runs lasts: half a route's run (at least 3 s), as
    there is one beside every route's."""
    return max(3, args.seconds // 2)


def bracketed(
    base: Callable[[], dict], runs: list[tuple[str, Callable[[], dict]]]
) -> tuple[list[dict], list[tuple[str, dict]]]:
    """Each of ``runs`` between two runs of the baseline (``base``): the baseline's runs,
    and each run named, with the mean of the baseline's requests/s just before and just
    after it (``base_rps``), the yardstick its ratio is taken to. On a machine whose
    speed drifts within minutes, a baseline measured once a round would hold a route run
    two minutes later to the speed the machine had then."""
    bases = [base()]
    measured = []
    for name, run in runs:
        result = run()
        bases.append(base())
        result["base_rps"] = (bases[-2]["rps"] + bases[-1]["rps"]) / 2
        measured.append((name, result))
    for result in bases:
        result["base_rps"] = result["rps"]
    return bases, measured


def ratio(run: dict) -> float:
    """A run's requests/s over its baseline's (see :func:`bracketed`)."""
    return run["rps"] / run["base_rps"]


def spread(results: dict[tuple[str, int], list[dict]], level: int) -> str:
    """The lowest and highest requests/s of the baseline's runs at ``level``."""
    rates = [run["rps"] for run in results[("baseline", level)]]
    return f"{min(rates):,.0f} to {max(rates):,.0f}"


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="8,32")
    parser.add_argument(
        "--scaling", default="1000,10000,100000", help="registry sizes (empty: none)"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.md"))
    args = parser.parse_args()
    levels = [int(part) for part in args.connections.split(",")]

    keys = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="specstore-bench-"))
    postgres = PostgresServer()
    postgres.start()
    servers: list[Gunicorn] = []
    proxies: list[Nginx] = []
    try:
        url = postgres.create_database("bench")
        Database(url).upgrade()
        started = time.monotonic()
        load_registry(url, 0, args.datasets)
        print(f"loaded {args.datasets} datasets x 3 revisions in {time.monotonic() - started:.1f}s")

        env = {
            "DATABASE_URL": url,
            "AUTH_PUBLIC_KEY": keys.public_pem,
            "HOOK_SECRET": HOOK_SECRET,
            "RUNNER_WORKERS": "0",
            "DPP_PIPELINES_DIR": str(work / "dpp"),
            "PUBLIC_URL": "http://specstore.bench/",
            "PROMETHEUS_MULTIPROC_DIR": str(work),
            # Uploads per user are limited by default; the benchmark measures the route.
            "UPLOAD_RATE_LIMIT": "off",
        }
        specstore = Gunicorn({**os.environ, **env}, work, workers=2)
        baseline = Gunicorn(
            {**os.environ, "BASELINE_DATABASE_URL": url}, work, workers=2, app="bench.baseline:app"
        )
        servers += [specstore, baseline]
        proxy = Nginx(specstore.port)
        proxies.append(proxy)
        meter = CpuMeter(postgres)

        owners = ",".join(keys.token(f"owner-{number}") for number in range(OWNERS))
        uploaders = ",".join(keys.token(f"uploader-{number}") for number in range(OWNERS))
        common = {"BENCH_DATASETS": str(args.datasets), "BENCH_OWNERS": str(OWNERS)}
        uploads = {"BENCH_BODY": body_template(CLIENT_SPEC), "BENCH_TOKENS": uploaders}
        unreachable = {"BENCH_BODY": body_template(UNREACHABLE_SPEC), "BENCH_TOKENS": uploaders}
        event_body = '{"pipeline_id": "%s", "event": "progress", "log": ["%s"]}'
        # Each event goes to its revision's hook URL, with its credential: those of the
        # newest revision of every dataset, a line each, for the script to take from.
        hooks = work / "hooks.txt"
        hooks.write_text(
            "".join(
                f"{credential(HOOK_SECRET, f'owner-{i % OWNERS}', f'ds-{i}', 3)}\n"
                for i in range(args.datasets)
            )
        )
        scenarios = {
            "status": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/status"}),
            "status, 304 to its ETag": (
                "get.lua",
                "/",
                {
                    "BENCH_PATH": POLLED,
                    "BENCH_IF_NONE_MATCH": "",  # the ETag of the moment, before each run
                },
            ),
            "info": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/info"}),
            "revision/latest": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/latest"}),
            "listing of 50": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d?limit=50&n=%d"}),
            "upload, new dataset": (
                "post.lua",
                "/source/upload",
                {"BENCH_MODE": "new", **uploads},
            ),
            "upload, new revision": (
                "post.lua",
                "/source/upload",
                {"BENCH_MODE": "existing", **uploads, "BENCH_TOKENS": owners},
            ),
            "upload, unreachable URL, no descriptor": (
                "post.lua",
                "/source/upload",
                {"BENCH_MODE": "new", **unreachable},
            ),
            "update event": (
                "post.lua",
                "/source/update",
                {"BENCH_MODE": "event", "BENCH_BODY": event_body, "BENCH_HOOKS": str(hooks)},
            ),
        }
        floor = "floor: Flask + the status query"
        names = ["baseline", floor, *scenarios]
        results: dict[tuple[str, int], list[dict]] = {
            (name, level): [] for name in names for level in levels
        }
        mixed: dict[tuple[str, str], list[dict]] = {
            (kind, part): [] for kind in MIXED for part in ("status", "upload")
        }

        def measure(name: str, level: int, salt: str) -> dict:
            """One wrk run of the floor (on the baseline's server) or of a scenario."""
            if name == floor:
                return wrk(
                    baseline.url + "/",
                    args.seconds,
                    level,
                    "get.lua",
                    {**common, "BENCH_PATH": "/floor/owner-%d/ds-%d"},
                    (meter, baseline),
                )
            script, path, extra = scenarios[name]
            if "BENCH_IF_NONE_MATCH" in extra:
                polled = requests.get(specstore.url + POLLED, timeout=10)
                extra = {**extra, "BENCH_IF_NONE_MATCH": polled.headers["ETag"]}
            return wrk(
                specstore.url + path,
                args.seconds,
                level,
                script,
                {**common, **extra, "BENCH_SALT": f"{salt}-c{level}"},
                (meter, specstore),
            )

        for round_number in range(args.rounds):
            salt = f"r{round_number}-{int(time.time())}"
            for level in levels:
                bases, measured = bracketed(
                    functools.partial(
                        baseline_run, baseline, baseline_seconds(args), level, common, meter
                    ),
                    [(name, functools.partial(measure, name, level, salt)) for name in names[1:]],
                )
                results[("baseline", level)] += bases
                for name, run in measured:
                    results[(name, level)].append(run)
            # The mixed runs: 64 connections read status while 8 upload new datasets,
            # see MIXED.
            for kind, (pause, proxied) in MIXED.items():
                front = proxy.url if proxied else specstore.url
                reading = start_wrk(
                    front + "/",
                    args.seconds,
                    64,
                    "get.lua",
                    {
                        **common,
                        "BENCH_PATH": "/source/owner-%d/ds-%d/status",
                        **({"BENCH_PAUSE_MS": str(pause)} if pause else {}),
                    },
                )
                uploading = start_wrk(
                    front + "/source/upload",
                    args.seconds,
                    8,
                    "post.lua",
                    {
                        **common,
                        "BENCH_MODE": "new",
                        "BENCH_SALT": f"{salt}-mixed-{pause}-{int(proxied)}",
                        **uploads,
                    },
                )
                mixed[(kind, "status")].append(wrk_result(reading, args.seconds))
                mixed[(kind, "upload")].append(wrk_result(uploading, args.seconds))
            print(f"round {round_number + 1} of {args.rounds} done")

        memory = peak_memory_mib(specstore)
        wider = wider_runs(args, env, work, url, meter, levels[0], common, scenarios, servers)
        rows = []
        for name in names:
            row = {"name": name, "failed": 0}
            for level in levels:
                runs = results[(name, level)]
                row[level] = {
                    "rps": median_of(runs, "rps"),
                    "p99": median_of(runs, "p99"),
                    "ratio": statistics.median(ratio(run) for run in runs),
                }
                row["failed"] += sum(run["failed"] for run in runs)
            first = results[(name, levels[0])]
            row["cpu"] = {
                part: statistics.median(run["cpu"][part] for run in first)
                for part in ("server", "postgres", "wrk")
            }
            row["busy"] = statistics.median(busy(run) for run in first)
            rows.append(row)

        # Status latency as the registry grows, in a database of its own.
        growing = postgres.create_database("growing")
        Database(growing).upgrade()
        grown = Gunicorn({**os.environ, **env, "DATABASE_URL": growing}, work, workers=2)
        servers.append(grown)
        scaling = []
        loaded = 0
        for size in sorted(int(part) for part in args.scaling.split(",") if part.strip()):
            load_registry(growing, loaded, size)
            loaded = size
            runs = [
                wrk(
                    grown.url + "/",
                    args.seconds,
                    levels[0],
                    "get.lua",
                    {
                        "BENCH_DATASETS": str(size),
                        "BENCH_OWNERS": str(OWNERS),
                        "BENCH_PATH": "/source/owner-%d/ds-%d/status",
                    },
                )
                for _ in range(args.rounds)
            ]
            scaling.append((size, {key: median_of(runs, key) for key in ("rps", "p50", "p99")}))
        for server in servers:
            server.stop()
        servers.clear()
        costs = layers.measure(url, args.datasets, OWNERS)
        upload_costs = layers.upload_costs(postgres, spec_for)
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in servers:
            server.stop()
        postgres.destroy()

    lines = [
        f"Measured {dt.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, PostgreSQL 15; gunicorn 2 sync workers, DPP mode; "
        f"wrk -t2, {args.seconds} s per run, {args.rounds} rounds, medians; "
        f"{args.datasets:,} datasets x 3 revisions. Ratio: requests/s over the baseline's "
        "at the same concurrency, measured just before and just after the run (the mean of "
        f"the two; {baseline_seconds(args)} s each). The baseline's own runs answered "
        f"{spread(results, levels[0])} requests/s at -c{levels[0]}: the machine's drift.",
        "",
        "| route | "
        + " | ".join(f"-c{level} req/s | -c{level} p99 ms | -c{level} ratio" for level in levels)
        + " | target ratio (-c8) | failed |",
        "| --- | " + " | ".join("---: | ---: | ---:" for _ in levels) + " | ---: | ---: |",
    ]
    for row in rows:
        cells = " | ".join(
            f"{row[level]['rps']:,.0f} | {row[level]['p99']:.2f} | {row[level]['ratio']:.3f}"
            for level in levels
        )
        target = f">= {TARGETS[row['name']]:.2f}" if row["name"] in TARGETS else ""
        lines.append(f"| {row['name']} | {cells} | {target} | {row['failed']} |")
    lines += [
        "",
        f"CPU time per request at -c{levels[0]} (µs; medians of the rounds), read from /proc: "
        "the server's workers (specstore's, or the baseline's for the baseline and the floor), "
        "PostgreSQL's processes, and wrk:",
        "",
        "| route | server | PostgreSQL | wrk | all | cores busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cpu = row["cpu"]
        lines.append(
            f"| {row['name']} | {cpu['server']:,.0f} | {cpu['postgres']:,.0f} | "
            f"{cpu['wrk']:,.0f} | {sum(cpu.values()):,.0f} | {row['busy']:.0%} |"
        )
    lines += [
        "",
        f"Uploads with {WIDER_WORKERS} sync workers (and the baseline with as many), "
        f"-c{levels[0]}:",
        "",
        "| route | req/s | p99 ms | ratio | CPU per request, all (µs) | cores busy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in wider.items():
        wider_ratio = statistics.median(ratio(run) for run in runs)
        all_cpu = statistics.median(sum(run["cpu"].values()) for run in runs)
        cores = statistics.median(busy(run) for run in runs)
        lines.append(
            f"| {name} | {median_of(runs, 'rps'):,.0f} | {median_of(runs, 'p99'):.2f} | "
            f"{wider_ratio:.3f} | {all_cpu:,.0f} | {cores:.0%} |"
        )
    lines += [
        "",
        "Mixed: 64 connections read status while 8 upload new datasets, at once; the "
        f"readers poll (each waits {MIXED['64 polling'][0]} ms after an answer, the load of "
        f"{64 * 2000 // MIXED['64 polling'][0]:,} front ends polling every 2 s) or ask again at "
        "once, straight to gunicorn or through nginx (reading each request whole before a "
        "worker gets it, as in docs/how-to/production.md):",
        "",
        "| run | route | requests/s | p50 ms | p99 ms | failed |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (kind, part), runs in mixed.items():
        lines.append(
            f"| {kind}, 8 uploading | {part} | {median_of(runs, 'rps'):,.0f} | "
            f"{median_of(runs, 'p50'):.2f} | {median_of(runs, 'p99'):.2f} | "
            f"{sum(run['failed'] for run in runs)} |"
        )
    if scaling:
        lines += [
            "",
            f"| datasets in the registry | status requests/s (-c{levels[0]}) | status p50 ms "
            "| status p99 ms |",
            "| ---: | ---: | ---: | ---: |",
        ]
    for size, measured in scaling:
        lines.append(
            f"| {size:,} | {measured['rps']:,.0f} | {measured['p50']:.2f} | {measured['p99']:.2f} |"
        )
    lines += [
        "",
        "Where the time goes, in one process (no HTTP; bench/layers.py), microseconds per request:",
        "",
        "| reads | µs |",
        "| --- | ---: |",
        *(f"| {what} | {micros:,.0f} |" for what, micros in costs),
        "",
        "| upload (the client's spec, DPP mode) | µs |",
        "| --- | ---: |",
        *(f"| {what} | {micros:,.0f} |" for what, micros in upload_costs),
        "",
        f"Peak memory per specstore worker (VmHWM): {', '.join(f'{m:.0f} MiB' for m in memory)}.",
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")
    # A run whose requests failed measured something else than the route: say so.
    failed = [row["name"] for row in rows if row["failed"]]
    failed += [
        f"{name}, {WIDER_WORKERS} workers"
        for name, runs in wider.items()
        if any(run["failed"] for run in runs)
    ]
    failed += [
        f"mixed {kind}: {part}"
        for (kind, part), runs in mixed.items()
        if any(r["failed"] for r in runs)
    ]
    if failed:
        print(f"requests failed in: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
