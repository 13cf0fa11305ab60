"""Prometheus metrics at ``/metrics``.

Counters and histograms are kept by prometheus-client; under gunicorn, with
``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn.conf.py sets it), every worker
writes them to that folder and any worker's ``/metrics`` adds them all up.
The number of revisions in each state is read from the database when
scraped, so it is the same whichever worker answers.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from .events import FINAL_STATES, LOADED, REGISTERED, RUNNING

REQUESTS = Counter(
    "specstore_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "specstore_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UPLOADS = Counter("specstore_uploads_total", "Uploads, by answer.", ["status"])
EVENTS = Counter("specstore_events_total", "Engine events recorded, by type.", ["event"])
RETRIES = Counter(
    "specstore_download_retries_total",
    "Downloads of sources tried again after a transient failure, as runs report them.",
)
UNCHANGED = Counter(
    "specstore_unchanged_revisions_total",
    "Scheduled revisions ended without a run: their sources had not changed.",
)
ANNOUNCEMENTS = Counter(
    "specstore_announcements_total",
    "Attempts at delivering announcements, by outcome: delivered, failed (to be tried "
    "again) or given_up.",
    ["outcome"],
)
STATES = (LOADED, REGISTERED, RUNNING, *sorted(FINAL_STATES))
# The load step's statistics ``retries.<resource>`` (datapackage_pipelines_specstore.steps).
RETRIES_PREFIX = "retries."


class RevisionStates:
    """Revisions by state, counted (in the database, by ``counts``) at each scrape, and
    the announcements waiting for delivery (by ``waiting``)."""

    def __init__(
        self, counts: Callable[[], dict[str, int]], waiting: Callable[[], int] | None = None
    ) -> None:
        self.counts = counts
        self.waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "specstore_revisions", "Stored revisions, by state.", labels=["state"]
        )
        counts = self.counts()
        for state in STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family
        if self.waiting is not None:
            yield GaugeMetricFamily(
                "specstore_announcements_waiting",
                "Announcements not delivered yet (nor given up).",
                value=self.waiting(),
            )


def count_event(event: str) -> None:
    EVENTS.labels(event).inc()


def count_announcement(outcome: str) -> None:
    ANNOUNCEMENTS.labels(outcome).inc()


def count_retries(stats: Any) -> None:
    """The fetch retries a finished run's statistics report."""
    if isinstance(stats, dict):
        retries = sum(
            value
            for key, value in stats.items()
            if key.startswith(RETRIES_PREFIX) and isinstance(value, int) and value > 0
        )
        if retries:
            RETRIES.inc(retries)


# Methods counted by name; any other a client sends is counted as "other", so that made-up
# methods cannot add series without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_request(method: str, route: str, status: int, seconds: float | None) -> None:
    requests, latency, uploads = _request_series(
        method if method in METHODS else "other", route, status
    )
    requests.inc()
    if seconds is not None:
        latency.observe(seconds)
    if uploads is not None:
        uploads.inc()


@functools.lru_cache(maxsize=1024)
def _request_series(method: str, route: str, status: int) -> tuple[Any, Any, Any]:
    """The series one request adds to, looked up by their labels once (``route`` is a
    route's pattern or "(unknown)", ``status`` one of the few specstore answers with)."""
    return (
        REQUESTS.labels(method, route, str(status)),
        LATENCY.labels(method, route),
        UPLOADS.labels(str(status)) if route == "/source/upload" else None,
    )


def exposition(
    revision_counts: Callable[[], dict[str, int]],
    announcements_waiting: Callable[[], int] | None = None,
) -> bytes:
    """Every metric, in Prometheus' text format: all workers' when in multi-process mode."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Everything())
    registry.register(RevisionStates(revision_counts, announcements_waiting))
    return generate_latest(registry)


class _Everything:
    """This process's metrics, without registering anything twice."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()
