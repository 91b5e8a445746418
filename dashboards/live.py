"""实时监察 — live supervision: what the supervision bureau (监察局) watches all day."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from .kit import (
    DEPT,
    Layout,
    alert_pages_link,
    bargauge_panel,
    color_override,
    department_variable,
    new_dashboard,
    stat_panel,
    table_panel,
    table_target,
    target,
    timeseries_panel,
    transformation,
)

UID = "jiancha-live"


def build() -> dm.Dashboard:
    d = new_dashboard(
        UID, "实时监察",
        "Live supervision of administrative approvals: open alerts, alert rates by rule, "
        "cases in progress, deadlines approaching, escalations (督办) and the newest red "
        "alerts, for the departments selected.",
        refresh="10s", time_from="now-6h", variables=[department_variable()])
    lay = Layout(d)

    lay.row("概览")
    lay.add(
        stat_panel(
            "在办预警", "Open alerts: alerts not yet resolved, as indexed in Redis "
            "(jc:open:{department}); counted by the workers every 5 s.",
            [target(f"sum(jiancha_open_alerts{{{DEPT}}})", "open alerts")],
            steps=((None, "green"), (1, "yellow"), (50, "red")))
        .data_links([alert_pages_link("告警列表 alert list")]),
        stat_panel(
            "在办件", "Cases in progress: cases with a future deadline in the workers' "
            "deadline indexes (all departments; the metric has no department label).",
            [target("sum(jiancha_deadlines_scheduled)", "cases in progress")]),
        stat_panel(
            "临近时限（下一工作日）", "Deadlines approaching within the next working day: "
            "yellow deadline.approaching warnings raised in the last 24 h. The rule fires when "
            "a case's remaining counted time is at most max(1 working day, 20 % of the "
            "promised limit).",
            [target(f'sum(increase(jiancha_alerts_total{{rule="deadline.approaching", {DEPT}}}[1d]))',
                    "approaching")],
            steps=((None, "green"), (1, "yellow"))),
        stat_panel(
            "红色预警（24小时）", "Red alerts (violations) raised in the last 24 h.",
            [target(f'sum(increase(jiancha_alerts_total{{severity="red", {DEPT}}}[1d]))',
                    "red")],
            steps=((None, "green"), (1, "red")))
        .data_links([alert_pages_link("红色告警 red alerts", severity="red")]),
        stat_panel(
            "督办（24小时）", "Escalations (督办) in the last 24 h: red alerts not corrected "
            "within the configured working days, now escalated to the supervision bureau.",
            [target(f'sum(increase(jiancha_alerts_total{{severity="escalated", {DEPT}}}[1d]))',
                    "escalated")],
            steps=((None, "green"), (1, "purple")))
        .data_links([alert_pages_link("督办 escalated alerts", severity="escalated")]),
        stat_panel(
            "事件速率", "Approval-step events accepted per second (all steps).",
            [target(f"sum(rate(jiancha_events_ingested_total{{{DEPT}}}[$__rate_interval]))",
                    "events/s")], unit="ops"),
    )

    lay.row("预警")
    lay.add(
        bargauge_panel(
            "在办预警（按部门）", "Open alerts by department (Redis open index). The "
            "workers count open alerts per department only; the split by severity is in the "
            "next panel (alerts raised in the time range).",
            [target(f"sort_desc(sum by (department) (jiancha_open_alerts{{{DEPT}}}))",
                    "{{department}}", instant=True)],
            w=8, steps=((None, "green"), (1, "yellow"), (50, "red")))
        .data_links([alert_pages_link("该部门的告警 the department's alerts",
                                      department="${__field.labels.department}")]),
        table_panel(
            "预警（按部门、级别）", "Alerts raised in the dashboard's time range by "
            "department (rows) and severity (columns): yellow = warning, red = violation, "
            "escalated = red not corrected in time (督办).",
            [table_target(
                f"sum by (department, severity) (increase(jiancha_alerts_total{{{DEPT}}}[$__range]))")],
            w=8, unit="short",
            transformations=[
                transformation("groupingToMatrix", {"rowField": "department",
                                                    "columnField": "severity",
                                                    "valueField": "Value",
                                                    "emptyValue": "zero"}),
                transformation("organize", {
                    "indexByName": {"department\\severity": 0, "yellow": 1, "red": 2,
                                    "escalated": 3},
                    "renameByName": {"department\\severity": "部门 department"}}),
            ]),
        bargauge_panel(
            "临近时限（按部门，24小时）", "Deadlines approaching within the next working day, "
            "by department: deadline.approaching warnings of the last 24 h.",
            [target("sort_desc(sum by (department) (increase(jiancha_alerts_total"
                    f'{{rule="deadline.approaching", {DEPT}}}[1d])))',
                    "{{department}}", instant=True)],
            w=8, steps=((None, "green"), (1, "yellow"))),
    )
    lay.add(
        timeseries_panel(
            "预警速率（按规则）", "Alerts raised per minute by rule (new alerts and "
            "escalations), 5 min average (recording rule jiancha:alerts:rate5m).",
            [target(f"sum by (rule) (jiancha:alerts:rate5m{{{DEPT}}}) * 60",
                    "{{rule}}")],
            unit="suffix:/min", table_legend=True)
        .data_links([alert_pages_link("该规则的告警 the rule's alerts", rule="${__field.labels.rule}",
                                      status="all")]),
        timeseries_panel(
            "预警速率（按级别）", "Alerts raised per minute by severity, stacked, 5 min "
            "average (recording rule jiancha:alerts:rate5m).",
            [target(f"sum by (severity) (jiancha:alerts:rate5m{{{DEPT}}}) * 60",
                    "{{severity}}")],
            unit="suffix:/min", stacked=True)
        .override_by_name(*color_override("yellow", "yellow"))
        .override_by_name(*color_override("red", "red"))
        .override_by_name(*color_override("escalated", "purple")),
    )
    lay.add(
        timeseries_panel(
            "新收件（按部门）", "Cases submitted per minute by department (submitted "
            "events): the flow of new cases into the system.",
            [target("sum by (department) (rate(jiancha_events_ingested_total"
                    f'{{step="submitted", {DEPT}}}[$__rate_interval])) * 60',
                    "{{department}}")],
            unit="suffix:/min"),
        timeseries_panel(
            "督办（按部门）", "Escalations (督办) per hour by department and rule: red "
            "alerts that were not corrected within the configured working days.",
            [target("sum by (department, rule) (increase(jiancha_alerts_total"
                    f'{{severity="escalated", {DEPT}}}[1h]))',
                    "{{department}} {{rule}}")],
            unit="short")
        .data_links([alert_pages_link("督办告警 the escalated alerts",
                                      department="${__field.labels.department}",
                                      rule="${__field.labels.rule}", severity="escalated")]),
    )

    lay.row("最新红色预警")
    lay.add(
        table_panel(
            "最新红色预警（近1小时）", "Newest red alerts of the last hour, by rule and "
            "department, newest first: how many were raised and when the last one was. "
            "Prometheus keeps counts, not alert rows; the alerts themselves (case, message, "
            "evidence) are in Redis (stream jc:alerts, hashes jc:alert:{id}) and would need "
            "a Redis datasource plugin to be listed here.",
            [table_target(
                "sum by (department, rule) (increase(jiancha_alerts_total"
                f'{{severity="red", {DEPT}}}[1h])) > 0',
                ref="A"),
             table_target(
                "max by (department, rule) (max_over_time((timestamp(increase("
                f'jiancha_alerts_total{{severity="red", {DEPT}}}[2m]) > 0))[1h:15s])) * 1000',
                ref="B")],
            w=24, h=9,
            transformations=[
                transformation("merge", {}),
                transformation("filterByValue", {
                    "type": "exclude", "match": "any",
                    "filters": [{"fieldName": "Value #A",
                                 "config": {"id": "isNull", "options": {}}}]}),
                transformation("sortBy", {"sort": [{"field": "Value #B", "desc": True}]}),
                transformation("organize", {
                    "excludeByName": {"Time": True},
                    "indexByName": {"Value #B": 0, "department": 1, "rule": 2, "Value #A": 3},
                    "renameByName": {"Value #B": "最近一次 last raised",
                                     "department": "部门 department",
                                     "rule": "规则 rule",
                                     "Value #A": "近1小时 red in last hour"}}),
            ])
        .override_by_name("最近一次 last raised",
                          [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .data_links([alert_pages_link("告警及办件 the alerts and their cases",
                                      department="${__data.fields.department}",
                                      rule="${__data.fields.rule}", severity="red")]),
    )
    return lay.build()
