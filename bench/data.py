"""The data section of `make bench`: one CSV published, from upload to SUCCEEDED.

A CSV of ROWS rows and six typed columns (integer, string, date, number, boolean,
string) is served on loopback and uploaded with its schema; the run publishes every
derived format, the report, the zip and the descriptor. Measured on each engine (the
embedded runner; DPP, `dpp run`) and each backend (the local folder; a real S3 server,
moto's), against `dataflows` alone on the same file in the same run (load with the
schema, dump to a folder): seconds, rows per second, the ratio, and the peak memory
(the resident set of the run's processes, the server's included, summed, sampled every
0.1 s). Memory is measured at ROWS / 10 too: it must not grow with the file.

    python bench/data.py [--rows 1000000] [--no-dpp] [--no-s3]
    python bench/data.py --rows 14000000 --engines dpp --backends s3 --no-alone   # 1 GB, DPP, S3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.dpp import DppDeployment, dpp_venv  # noqa: E402
from tests.support.net import StaticFiles  # noqa: E402
from tests.support.processes import children  # noqa: E402
from tests.support.s3 import CREDENTIALS, MotoServer  # noqa: E402
from tests.support.server import Server, server_env  # noqa: E402
from tests.support.tokens import KeyPair  # noqa: E402

SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer"},
        {"name": "name", "type": "string"},
        {"name": "day", "type": "date"},
        {"name": "value", "type": "number"},
        {"name": "flag", "type": "boolean"},
        {"name": "category", "type": "string"},
    ]
}
HOOK_SECRET = "bench-hook-secret"  # noqa: S105
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def write_csv(path: Path, rows: int) -> None:
    generator = random.Random(7)  # noqa: S311 - data, not secrets
    start = dt.date(2000, 1, 1)
    with path.open("w", encoding="utf-8") as out:
        out.write("id,name,day,value,flag,category\n")
        for index in range(rows):
            name = f"{generator.choice(WORDS)} {generator.choice(WORDS)} {index:08d} station"
            day = start + dt.timedelta(days=index % 9000)
            value = f"{generator.uniform(-1e6, 1e6):.4f}"
            flag = "true" if index % 3 else "false"
            out.write(
                f"{index},{name},{day},{value},{flag},{generator.choice(WORDS)}-{index % 97}\n"
            )


def tree_rss(pid: int) -> int:
    """The resident set of ``pid`` and every process under it, in bytes."""
    total = 0
    for each in [pid, *(child.pid for child in children(pid))]:
        try:
            with open(f"/proc/{each}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


class Peak:
    """The largest resident set of the process trees under ``pids`` while it runs."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(tree_rss(pid) for pid in self.pids))
            time.sleep(0.1)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


DATAFLOWS_ALONE = """
import sys, json
from dataflows import Flow, load, dump_to_path
schema = json.loads(sys.argv[3])
Flow(load(sys.argv[1], name="table", override_schema=schema,
          cast_strategy=load.CAST_WITH_SCHEMA),
     dump_to_path(sys.argv[2])).process()
"""


def dataflows_alone(csv: Path, work: Path, python: str) -> tuple[float, int]:
    import json

    out = work / "dataflows-out"
    started = time.perf_counter()
    process = subprocess.Popen(
        [python, "-c", DATAFLOWS_ALONE, str(csv), str(out), json.dumps(SCHEMA)]
    )
    with Peak(process.pid) as peak:
        process.wait()
    elapsed = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError("dataflows alone failed")
    return elapsed, peak.peak


def spec(url: str, dataset: str) -> dict[str, Any]:
    return {
        "meta": {
            "version": 1,
            "ownerid": "bench",
            "owner": "Bench",
            "dataset": dataset,
            "findability": "published",
        },
        "inputs": [
            {
                "kind": "datapackage",
                "url": url + "datapackage.json",
                "parameters": {
                    "descriptor": {
                        "name": dataset,
                        "resources": [
                            {
                                "name": "table",
                                "path": "table.csv",
                                "format": "csv",
                                "schema": SCHEMA,
                            }
                        ],
                    }
                },
            }
        ],
        "outputs": [],
    }


def publish_once(
    served: str, work: Path, engine: str, backend: str, moto: MotoServer | None, keypair: KeyPair
) -> tuple[float, int]:
    """Seconds from upload to SUCCEEDED, and the peak memory of the run's processes."""
    root = Path(tempfile.mkdtemp(prefix=f"{engine}-{backend}-", dir=work))
    env: dict[str, str] = {
        "DATABASE_URL": f"sqlite:///{root}/registry.db",
        "AUTH_PUBLIC_KEY": keypair.public_pem,
        "HOOK_SECRET": HOOK_SECRET,
        "OUTPUT_DIR": str(root / "output"),
        "DATA_DIR": str(root / "data"),
        "DOWNLOAD_MAX_BYTES": str(4 * 1024**3),
        "UNPACKED_MAX_BYTES": str(8 * 1024**3),
        "RUN_TIMEOUT": "7200",
        "UPLOAD_RATE_LIMIT": "off",
        "RUNNER_WORKERS": "1" if engine == "embedded" else "0",
    }
    if backend == "s3":
        assert moto is not None
        env.update(moto.settings(prefix=root.name))
    dpp = None
    if engine == "dpp":
        dpp = DppDeployment(root / "dpp", dpp_venv())
        env["DPP_PIPELINES_DIR"] = str(dpp.root)
    server = Server(server_env(**env), root)
    try:
        dataset = "table"
        token = keypair.token("bench")
        started = time.perf_counter()
        answer = requests.post(
            server.url + "/source/upload",
            json=spec(served, dataset),
            headers={"Auth-Token": token},
            timeout=60,
        )
        answer.raise_for_status()
        with Peak(server.process.pid) as peak:
            if dpp is not None:
                runner = subprocess.Popen(
                    [str(dpp.venv / "bin" / "dpp"), "run", f"./bench/{dataset}"],
                    cwd=dpp.root,
                    env=dpp.env(**(CREDENTIALS if backend == "s3" else {})),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                peak.pids = (server.process.pid, runner.pid)
            while True:
                status = requests.get(
                    f"{server.url}/source/bench/{dataset}/status", timeout=30
                ).json()
                if status["state"] in ("SUCCEEDED", "FAILED", "INVALID"):
                    break
                time.sleep(0.2)
            if dpp is not None:
                runner.wait()
        elapsed = time.perf_counter() - started
        if status["state"] != "SUCCEEDED":
            raise RuntimeError(f"{engine}/{backend}: {status['state']}: {status['errors']}")
        return elapsed, peak.peak
    finally:
        server.stop()


def main() -> int:
    arguments = argparse.ArgumentParser()
    arguments.add_argument("--rows", type=int, default=1_000_000)
    arguments.add_argument("--no-dpp", action="store_true")
    arguments.add_argument("--no-s3", action="store_true")
    arguments.add_argument("--engines", help="the engines to measure, e.g. dpp (all by default)")
    arguments.add_argument("--backends", help="the backends to measure, e.g. s3 (all by default)")
    arguments.add_argument(
        "--no-alone", action="store_true", help="not dataflows alone (no ratio is given)"
    )
    arguments.add_argument("--output", default=str(ROOT / "bench" / "data-results.md"))
    options = arguments.parse_args()
    keypair = KeyPair.generate()
    engines = ["embedded"] + ([] if options.no_dpp else ["dpp"])
    backends = ["local"] + ([] if options.no_s3 else ["s3"])
    if options.engines:
        engines = [name for name in options.engines.split(",") if name in ("embedded", "dpp")]
    if options.backends:
        backends = [name for name in options.backends.split(",") if name in ("local", "s3")]
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="specstore-bench-data-") as temporary:
        work = Path(temporary)
        moto = MotoServer(work / "moto.log") if "s3" in backends else None
        os.environ.update(CREDENTIALS)
        try:
            results = []
            for rows in (options.rows // 10, options.rows):
                served_dir = work / f"served-{rows}"
                served_dir.mkdir()
                csv = served_dir / "table.csv"
                write_csv(csv, rows)
                size = csv.stat().st_size
                print(f"{rows:,} rows ({size / 1e6:.0f} MB)", flush=True)
                if not options.no_alone:
                    alone = dataflows_alone(csv, work, sys.executable)
                    print(f"  dataflows alone: {alone[0]:.1f} s", flush=True)
                    results.append((rows, size, "dataflows alone", "-", alone))
                with StaticFiles(str(served_dir)) as served:
                    for engine in engines:
                        for backend in backends:
                            measured = publish_once(
                                served.url, work, engine, backend, moto, keypair
                            )
                            print(
                                f"  {engine}, {backend}: {measured[0]:.1f} s, "
                                f"peak {measured[1] / 2**20:.0f} MiB",
                                flush=True,
                            )
                            results.append((rows, size, engine, backend, measured))
        finally:
            if moto is not None:
                moto.stop()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines.append(
        f"Measured {when} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}: a CSV of six typed columns published from upload to "
        "SUCCEEDED (every derived format, the report, the zip, the descriptor), against "
        "dataflows alone (load with the schema, dump to a folder) on the same file. Peak: the "
        "resident set of the run's processes (with the server's) summed."
    )
    lines.append("")
    lines.append(
        "| rows | MB | run | backend | seconds | rows/s | ratio to dataflows alone | peak MiB |"
    )
    lines.append("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    alone_by_rows = {
        rows: measured[0] for rows, _, run, _, measured in results if run == "dataflows alone"
    }
    for rows, size, run, backend, (seconds, peak) in results:
        ratio = f"{seconds / alone_by_rows[rows]:.2f}" if rows in alone_by_rows else "-"
        lines.append(
            f"| {rows:,} | {size / 1e6:.0f} | {run} | {backend} | {seconds:.1f} | "
            f"{rows / seconds:,.0f} | {ratio} | {peak / 2**20:.0f} |"
        )
    lines.append("")
    small, large = options.rows // 10, options.rows
    for engine in engines:
        for backend in backends:
            peaks = {
                rows: measured[1]
                for rows, _, run, b, measured in results
                if run == engine and b == backend
            }
            lines.append(
                f"- {engine}, {backend}: peak at {large:,} rows / peak at {small:,} rows = "
                f"{peaks[large] / peaks[small]:.2f} (10 times the rows)"
            )
    text = "\n".join(lines) + "\n"
    Path(options.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
