"""gunicorn settings for specstore: `gunicorn -c gunicorn.conf.py server:app`.

Every setting can be overridden from the environment (GUNICORN_CMD_ARGS, or
the variables below)."""

import os
import shutil
import tempfile

# prometheus-client's multi-process mode: every worker writes its metrics here and
# /metrics adds them up. Set before the workers import specstore; a folder made here
# is removed when gunicorn exits.
_METRICS_MADE_HERE = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _METRICS_MADE_HERE = tempfile.mkdtemp(prefix="specstore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_MADE_HERE

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# The access log is off: its request line would carry ?token= and ?jwt= values.
accesslog = None


def _components(worker):
    app = getattr(worker, "wsgi", None)  # absent if the worker failed to load the app
    return getattr(app, "extensions", {}).get("specstore.components")


def post_worker_init(worker):
    # Each worker runs its own share of the pipelines (the database leases keep
    # two workers from running one revision) and picks up left-behind ones.
    components = _components(worker)
    if components is not None:
        components.start_engine()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _METRICS_MADE_HERE:
        shutil.rmtree(_METRICS_MADE_HERE, ignore_errors=True)


def worker_exit(server, worker):
    components = _components(worker)
    if components is not None:
        components.close()
