"""引擎健康 — engine health: throughput, lag, dead letters, latency, workers.

The heavier queries read the recording rules of dashboards/prometheus/rules/
(``jiancha:…`` series), evaluated once by Prometheus instead of on every refresh.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from .kit import (
    DEPT,
    Layout,
    department_variable,
    new_dashboard,
    stat_panel,
    target,
    timeseries_panel,
)

UID = "jiancha-health"


def build() -> dm.Dashboard:
    d = new_dashboard(
        UID, "引擎健康",
        "Engine health of the jiancha workers: events per second, consumer lag, dead-letter "
        "rate by reason, event-to-alert latency, deadline timer lateness and worker count.",
        refresh="10s", time_from="now-1h", variables=[department_variable()])
    lay = Layout(d)

    lay.row("概览")
    lay.add(
        stat_panel(
            "工作进程", "Workers: ready workers (jiancha_worker_up, set once the worker "
            "reached Redis) and worker targets Prometheus scrapes successfully (up).",
            [target("sum(jiancha_worker_up)", "ready", ref="A"),
             target('count(up{job="jiancha"} == 1)', "scraped", ref="B")],
            steps=((None, "red"), (1, "green"))),
        stat_panel(
            "事件/秒", "Approval-step events accepted per second, 1 min average "
            "(recording rule jiancha:events_ingested:rate1m).",
            [target(f"sum(jiancha:events_ingested:rate1m{{{DEPT}}})", "events/s")], unit="ops"),
        stat_panel(
            "消费积压", "Consumer lag: records in the events topic not yet read by the "
            "workers, all partitions.",
            [target("sum(jiancha:consumer_lag:sum)", "lag")],
            steps=((None, "green"), (100, "yellow"), (1000, "red"))),
        stat_panel(
            "死信比例", "Share of incoming events sent to the dead-letter topic, 5 min "
            "average (recording rule jiancha:dlq_ratio:rate5m).",
            [target("jiancha:dlq_ratio:rate5m", "dead letters")], unit="percentunit",
            steps=((None, "green"), (0.01, "yellow"), (0.05, "red"))),
        stat_panel(
            "事件→预警 P99", "99th percentile of the time from receiving the event that "
            "completes a violation to the alert stored in Redis, 5 min window.",
            [target("jiancha:event_to_alert_seconds:p99", "p99")], unit="s",
            steps=((None, "green"), (1, "yellow"), (5, "red"))),
        stat_panel(
            "告警（引擎）", "Engine alerts firing in Prometheus (rules in "
            "dashboards/prometheus/rules/jiancha-alerts.yml); 0 when none fires.",
            [target('count(ALERTS{alertname=~"Jiancha.+", alertstate="firing"}) or vector(0)',
                    "firing")],
            steps=((None, "green"), (1, "red")), graph=False),
    )

    lay.row("吞吐")
    lay.add(
        timeseries_panel(
            "事件吞吐（按环节）", "Events accepted per second by approval step.",
            [target(f"sum by (step) (jiancha:events_ingested:rate1m{{{DEPT}}})", "{{step}}")],
            unit="ops", stacked=True),
        timeseries_panel(
            "事件吞吐（按部门）", "Events accepted per second by department.",
            [target(f"sum by (department) (jiancha:events_ingested:rate1m{{{DEPT}}})",
                    "{{department}}")],
            unit="ops", stacked=True),
    )
    lay.add(
        timeseries_panel(
            "死信速率（按原因）", "Events sent to the dead-letter topic per second by reason "
            "(invalid_json, invalid_event, bad_signature, unknown_item, duplicate_event_id, "
            "…).",
            [target("sum by (reason) (jiancha:events_rejected:rate1m)", "{{reason}}")],
            unit="ops", stacked=True),
        timeseries_panel(
            "消费积压（按分区）", "Consumer lag by topic partition, as reported by the "
            "worker that owns the partition.",
            [target("max by (topic, partition) (jiancha_consumer_lag)",
                    "{{topic}}/{{partition}}")],
            unit="short"),
    )

    lay.row("时延")
    lay.add(
        timeseries_panel(
            "事件→预警时延", "Event-to-alert latency percentiles (p50, p90, p99), 5 min "
            "window: from receiving the completing event to the alert stored in Redis.",
            [target("jiancha:event_to_alert_seconds:p50", "p50", ref="A"),
             target("jiancha:event_to_alert_seconds:p90", "p90", ref="B"),
             target("jiancha:event_to_alert_seconds:p99", "p99", ref="C")],
            unit="s"),
        timeseries_panel(
            "时限触发延迟", "Deadline timer lateness percentiles: how long after its due "
            "instant a deadline alert was stored (no event needed to fire it).",
            [target("jiancha:deadline_lateness_seconds:p50", "p50", ref="A"),
             target("jiancha:deadline_lateness_seconds:p99", "p99", ref="B")],
            unit="s"),
    )

    lay.row("进程与存储")
    lay.add(
        timeseries_panel(
            "工作进程数", "Workers over time: ready workers and successfully scraped "
            "worker targets. Scale out with `docker compose up --scale worker=N`.",
            [target("sum(jiancha_worker_up)", "ready", ref="A"),
             target('count(up{job="jiancha"} == 1)', "scraped", ref="B")],
            w=8, unit="short"),
        timeseries_panel(
            "案件与时限索引", "Cases with a future deadline in the deadline indexes, and "
            "cases held by the workers (counted when partitions are assigned).",
            [target("sum(jiancha_deadlines_scheduled)", "cases with a deadline", ref="A"),
             target("sum(jiancha_cases)", "cases held (at assignment)", ref="B")],
            w=8, unit="short"),
        timeseries_panel(
            "存储失败与日历回退", "Failed attempts to store alerts in Redis (retried) and "
            "years counted Mon–Fri for lack of an official calendar, per hour; both should "
            "stay at 0.",
            [target("sum by (sink) (increase(jiancha_sink_errors_total[1h])) or on() vector(0)",
                    "sink errors {{sink}}", ref="A"),
             target("sum by (year) (increase(jiancha_calendar_fallback_total[1h])) or on() vector(0)",
                    "calendar fallback {{year}}", ref="B")],
            w=8, unit="short"),
    )
    lay.add(
        timeseries_panel(
            "规则检查出错", "Rule checks that raised, per hour by rule "
            "(jiancha_check_errors_total): each is logged with its case, retried when the "
            "case is next judged, and turns the worker's /health to degraded; should stay "
            "at 0.",
            [target("sum by (rule) (increase(jiancha_check_errors_total[1h])) or on() vector(0)",
                    "{{rule}}")],
            w=24, unit="short"),
    )
    return lay.build()
