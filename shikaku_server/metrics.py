"""Prometheus metrics through ``prometheus_client``: request counts and latency histograms per
route template, and domain events.

Labels are the route *template* (``/v1/visits/{visit_id}/medications``), method and status —
never a path with values, a query string or anything personal.

Under ``shikaku-server --workers N`` (N > 1) the library's multiprocess mode is on
(``PROMETHEUS_MULTIPROC_DIR``, set up by ``shikaku_server.main``): every worker writes its
values to files in that directory and a scrape, whichever worker answers it, sums them all. In
one process each app holds its own registry (tests build many apps in one process).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps values in files (it decides once, at its import, from
    ``PROMETHEUS_MULTIPROC_DIR``)."""
    return values.ValueClass is not values.MutexValue


class Metrics:
    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "shikaku_http_requests",
            "HTTP requests by route template and status.",
            ("method", "route", "status"),
            registry=self._registry,
        )
        self._duration = Histogram(
            "shikaku_http_request_duration_seconds",
            "Request latency by route template.",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self._registry,
        )
        self._events = Counter("shikaku_events", "Domain events.", ("event",), registry=self._registry)
        # the labelled children, looked up once each: ``labels()`` costs a lock and a validation
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[tuple[str, str], Histogram] = {}
        self._event_children: dict[str, Counter] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        requests = self._request_children.get(key)
        if requests is None:
            requests = self._request_children[key] = self._requests.labels(method, route, str(status))
        requests.inc()
        duration = self._duration_children.get((method, route))
        if duration is None:
            duration = self._duration_children[(method, route)] = self._duration.labels(method, route)
        duration.observe(seconds)

    def event(self, name: str) -> None:
        """Count a domain event (``eligibility_lookup``, ``upload_rows_accepted`` …)."""
        self.add(name, 1)

    def add(self, name: str, amount: int) -> None:
        child = self._event_children.get(name)
        if child is None:
            child = self._event_children[name] = self._events.labels(name)
        child.inc(amount)

    def render(self) -> bytes:
        """The Prometheus text exposition: of every worker in multiprocess mode, else of this app."""
        if multiprocess_mode():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self._registry)
