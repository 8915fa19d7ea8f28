"""Prometheus text exposition: request counts and latency histograms per route template.

Labels are the route *template* (``/v1/visits/{visit_id}/medications``), method and status —
never a path with values, a query string or anything personal. Per process; with several
workers each process reports its own (documented in docs/operations.md).
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._hist: dict[tuple[str, str], list[int]] = {}
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self._events: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            key = (method, route)
            hist = self._hist.setdefault(key, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            self._sum[key] += seconds
            self._count[key] += 1

    def event(self, name: str) -> None:
        """Count a domain event (``eligibility_lookup``, ``upload_rows_accepted`` …)."""
        with self._lock:
            self._events[name] += 1

    def add(self, name: str, amount: int) -> None:
        with self._lock:
            self._events[name] += amount

    def render(self) -> str:
        lines = [
            "# HELP shikaku_http_requests_total HTTP requests by route template and status.",
            "# TYPE shikaku_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'shikaku_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP shikaku_http_request_duration_seconds Request latency by route template.",
                "# TYPE shikaku_http_request_duration_seconds histogram",
            ]
            for (method, route), hist in sorted(self._hist.items()):
                labels = f'method="{method}",route="{route}"'
                for bound, n in zip(BUCKETS, hist, strict=True):
                    lines.append(f'shikaku_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}')
                count = self._count[(method, route)]
                lines.append(f'shikaku_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
                lines.append(f"shikaku_http_request_duration_seconds_sum{{{labels}}} {self._sum[(method, route)]:.6f}")
                lines.append(f"shikaku_http_request_duration_seconds_count{{{labels}}} {count}")
            lines += ["# HELP shikaku_events_total Domain events.", "# TYPE shikaku_events_total counter"]
            for name, n in sorted(self._events.items()):
                lines.append(f'shikaku_events_total{{event="{name}"}} {n}')
        return "\n".join(lines) + "\n"
