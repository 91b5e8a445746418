"""The tests' metric reader finds numbers, and no number where there is only a name."""

from prometheus_client import CollectorRegistry, Counter, generate_latest

from tests.metric_samples import samples, total


def test_a_metric_without_a_sample_reads_as_none() -> None:
    registry = CollectorRegistry()
    errors = Counter("jiancha_sink_errors", "Failed attempts", ["sink"], registry=registry)
    text = generate_latest(registry)
    assert b"jiancha_sink_errors_total" in text  # the name alone is there ...
    assert samples(text, "jiancha_sink_errors_total") == []  # ... but no sample
    errors.labels("redis").inc(3)
    text = generate_latest(registry)
    assert total(text, "jiancha_sink_errors_total", sink="redis") == 3
    assert total(text, "jiancha_sink_errors_total", sink="kafka") == 0
