"""Prometheus samples as the tests read them from ``/metrics``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


STATUS_ROUTE = "/source/<owner:owner_id>/<dataset>/status"


def requests_of(samples, route, status="200", method="GET"):
    labels = (("method", method), ("route", route), ("status", status))
    return samples.get(("specstore_http_requests_total", labels), 0.0)


def metric_value(service, name: str) -> float:
    """The sum of ``name``'s samples at ``service``'s /metrics (anything with a
    ``get(path) -> (status, text)``, as tests.support.engines has)."""
    status, text = service.get("/metrics")
    assert status == 200, text
    return sum(value for (sample, _), value in samples(text).items() if sample == name)
