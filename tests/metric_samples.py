"""Read a sample's value from a Prometheus exposition, so that a test checks a number, not
a name (``# HELP`` names every metric, sample or none)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str | bytes, name: str, **labels: str) -> list[float]:
    """The values of every sample called ``name`` whose labels include ``labels``."""
    if isinstance(text, bytes):
        text = text.decode()
    return [s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def total(text: str | bytes, name: str, **labels: str) -> float:
    """The sum of :func:`samples` (0 when there is none)."""
    return sum(samples(text, name, **labels))
