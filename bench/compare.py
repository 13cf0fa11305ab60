"""This checkout against another commit, in one run, turn about: what changed in speed
whatever the machine is doing.

``bench/run.py`` measures each route against a baseline app run just before and just
after it; on a machine whose speed drifts from minute to minute (a shared virtual
machine), two runs of the same code may still differ by more than a change does. Here
the other commit (``--base``, exported with ``git archive``) and this checkout run side by
side under gunicorn, each on a database of its own loaded with the same registry, and wrk
drives each route on one and then on the other, the order swapped every round; the answer
is this checkout's requests/s over the base's, the median of the rounds.

    python bench/compare.py --base 2a9734e   # or: make bench-compare BASE=2a9734e

Two other commits may be compared the same way (``--this <commit>``), on some routes only
(``--routes upload``: those whose names contain a word given), to find which commit of a
series changed a route's speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.registry import CLIENT_SPEC, OWNERS, load_registry  # noqa: E402
from bench.run import CpuMeter, body_template, wrk  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.server import Gunicorn  # noqa: E402
from tests.support.tokens import KeyPair  # noqa: E402

ROUTES = {
    "status": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/status"}),
    "info": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d/ds-%d/info"}),
    "listing of 50": ("get.lua", "/", {"BENCH_PATH": "/source/owner-%d?limit=50&n=%d"}),
    "upload, new dataset": ("post.lua", "/source/upload", {"BENCH_MODE": "new"}),
    # The registry's own datasets, each uploaded with its owner's token.
    "upload, new revision": ("post.lua", "/source/upload", {"BENCH_MODE": "existing"}),
}


def export(ref: str, into: Path) -> Path:
    """The tree of commit ``ref``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    tree = into
    tree.mkdir(parents=True)
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(tree, filter="data")
    return tree


def serve(root: Path, url: str, work: Path, keys: KeyPair) -> Gunicorn:
    """specstore of the checkout at ``root`` under gunicorn (2 workers, DPP mode, as
    bench/run.py runs it), its database migrated by its own code."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{root / 'dpp-plugin'}",
        "DATABASE_URL": url,
        "AUTH_PUBLIC_KEY": keys.public_pem,
        # Both the per-revision secret and the single token of older releases.
        "HOOK_SECRET": "bench-hook-secret",
        "HOOK_TOKEN": "bench-hook-token",
        "RUNNER_WORKERS": "0",
        "DPP_PIPELINES_DIR": str(work / "dpp"),
        "PUBLIC_URL": "http://specstore.bench/",
        "PROMETHEUS_MULTIPROC_DIR": str(work),
        "UPLOAD_RATE_LIMIT": "off",
    }
    subprocess.run(
        [sys.executable, "-m", "specstore", "db", "upgrade"],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
    )
    return Gunicorn(env, work, workers=2, root=root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--datasets", type=int, default=2000)
    parser.add_argument("--this", help="a commit to measure in place of this checkout")
    parser.add_argument(
        "--routes", nargs="*", default=[], help="only the routes whose names contain one of these"
    )
    args = parser.parse_args()
    routes = {
        name: route
        for name, route in ROUTES.items()
        if not args.routes or any(word in name for word in args.routes)
    }

    keys = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="specstore-compare-"))
    roots = {
        "base": export(args.base, work / "base-tree"),
        "this": export(args.this, work / "this-tree") if args.this else ROOT,
    }
    postgres = PostgresServer()
    postgres.start()
    servers: dict[str, Gunicorn] = {}
    try:
        for name, root in roots.items():
            url = postgres.create_database(name)
            folder = work / name
            folder.mkdir(exist_ok=True)
            servers[name] = serve(root, url, folder, keys)
            load_registry(url, 0, args.datasets)
        meter = CpuMeter(postgres)
        uploaders = ",".join(keys.token(f"uploader-{number}") for number in range(OWNERS))
        owners = ",".join(keys.token(f"owner-{number}") for number in range(OWNERS))

        def tokens(env: dict[str, str]) -> dict[str, str]:
            # New revisions are uploaded by the owners of the registry's datasets.
            return {"BENCH_TOKENS": owners} if env.get("BENCH_MODE") == "existing" else {}

        common = {
            "BENCH_DATASETS": str(args.datasets),
            "BENCH_OWNERS": str(OWNERS),
            "BENCH_BODY": body_template(CLIENT_SPEC),
            "BENCH_TOKENS": uploaders,
        }
        rates: dict[tuple[str, str], list[float]] = {}
        failed = 0
        for number in range(args.rounds):
            order = ("base", "this") if number % 2 == 0 else ("this", "base")
            for route, (script, path, env) in routes.items():
                for name in order:
                    server = servers[name]
                    result = wrk(
                        server.url + path,
                        args.seconds,
                        8,
                        script,
                        {**common, **env, **tokens(env), "BENCH_SALT": f"{name}-{number}"},
                        (meter, server),
                    )
                    failed += result["failed"]
                    rates.setdefault((route, name), []).append(result["rps"])
            print(f"round {number + 1} of {args.rounds} done", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        postgres.destroy()

    this = args.this or "this"
    print(
        f"\n{args.this or 'This checkout'} against {args.base}, turn about, wrk -t2 -c8, "
        f"{args.seconds} s per run, "
        f"{args.rounds} rounds, medians; {args.datasets:,} datasets x 3 revisions.\n"
    )
    print(f"| route | {args.base} req/s | {this} req/s | {this} / {args.base} |")
    print("| --- | ---: | ---: | ---: |")
    for route in routes:
        base = statistics.median(rates[(route, "base")])
        this = statistics.median(rates[(route, "this")])
        print(f"| {route} | {base:,.0f} | {this:,.0f} | {this / base:.3f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
