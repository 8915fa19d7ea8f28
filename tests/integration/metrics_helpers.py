"""Reading ``/metrics`` as Prometheus does (the library's own text parser), not by substrings."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly these labels; 0 when there is none."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def events(text: str) -> dict[str, int]:
    """``shikaku_events_total`` by event."""
    return {
        s.labels["event"]: int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "shikaku_events_total"
    }
