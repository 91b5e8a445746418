"""Prometheus metrics of one worker, in their own registry (no import-time side effects)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter(
            "jiancha_events_ingested", "Approval-step events accepted by the engine",
            ["department", "step"], registry=r)
        self.events_rejected = Counter(
            "jiancha_events_rejected", "Events sent to the dead-letter topic, by reason",
            ["reason"], registry=r)
        self.alerts = Counter(
            "jiancha_alerts", "Alerts raised (new or escalated), by rule, severity, department",
            ["rule", "severity", "department"], registry=r)
        self.alerts_retracted = Counter(
            "jiancha_alerts_retracted", "Alerts retracted because a later event proved them "
            "wrong, by rule and department", ["rule", "department"], registry=r)
        self.open_alerts = Gauge(
            "jiancha_open_alerts", "Open alerts in Redis, by department",
            ["department"], registry=r)
        self.event_to_alert = Histogram(
            "jiancha_event_to_alert_seconds",
            "From receiving the event that completes a violation to the alert stored in Redis",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.deadline_lateness = Histogram(
            "jiancha_deadline_lateness_seconds",
            "How long after its due instant (clock time) a deadline alert was stored",
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r)
        self.consumer_lag = Gauge(
            "jiancha_consumer_lag", "Messages not yet read, by topic partition",
            ["topic", "partition"], registry=r)
        self.cases = Gauge("jiancha_cases", "Cases held by this worker", registry=r)
        self.cases_removed = Counter(
            "jiancha_cases_removed", "Finished cases taken out of the case table after their "
            "retention", registry=r)
        self.deadlines_scheduled = Gauge(
            "jiancha_deadlines_scheduled", "Cases with a future deadline in the index", registry=r)
        self.sink_errors = Counter(
            "jiancha_sink_errors", "Failed attempts to store alerts (retried)", ["sink"],
            registry=r)
        self.calendar_fallback = Counter(
            "jiancha_calendar_fallback", "Years counted without 调休 (statutory holidays "
            "and weekends only) for lack of an official calendar",
            ["year"], registry=r)
        self.check_errors = Counter(
            "jiancha_check_errors", "Rule checks that raised (each logged with its case and "
            "retried when the case is next judged), by rule", ["rule"], registry=r)
        self.partition_restarts = Counter(
            "jiancha_partition_restarts", "Assigned partitions that delivered nothing and were "
            "resumed by the watchdog", registry=r)
        self.worker_up = Gauge("jiancha_worker_up", "1 while this worker runs", registry=r)
