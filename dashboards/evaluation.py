"""绩效评估 — performance evaluation: indicators and scores per department and item.

Reads the indicator metrics ``jiancha_indicator{department,item,indicator,period}`` and
``jiancha_score{department,period}``. Assumptions about them, all in this module:

- a department's total has ``item=""`` (no item label), an item's row its item code: the
  ``item`` variable's "All" is the department total (``item=~"^$"``), choosing items shows
  them instead;
- rates (``*_rate``) are fractions between 0 and 1;
- periods are ``YYYY-MM``, ``YYYY-Qn``, ``YYYY-Hn`` and ``YYYY``; the workers export the
  current and previous ones, so a month's series lives about two months in Prometheus and
  the monthly trends read the months of the dashboard's time range (:data:`MONTH_PERIODS`);
- every worker exports the same global values (merged in Redis): ``max`` de-duplicates.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dm

from .kit import (
    DEPT,
    Layout,
    barchart_panel,
    bargauge_panel,
    department_variable,
    new_dashboard,
    query_variable,
    table_panel,
    table_target,
    target,
    timeseries_panel,
    transformation,
)

UID = "jiancha-evaluation"

#: the ``item`` label of a department's total is empty: what "All items" selects
DEPARTMENT_TOTAL = "^$"
#: regular expression of a monthly ``period`` label value
MONTH_PERIODS = "[0-9]{4}-[0-9]{2}"

#: indicator label value -> (Chinese column name, Grafana unit)
INDICATORS: dict[str, tuple[str, str]] = {
    "received": ("收件", "short"),
    "accepted": ("受理", "short"),
    "decided": ("办结", "short"),
    "on_time_rate": ("按时办结率", "percentunit"),
    "early_rate": ("提前办结率", "percentunit"),
    "overdue_rate": ("超期率", "percentunit"),
    "mean_days": ("平均用时（工作日）", "suffix: 工作日"),
    "p90_days": ("P90 用时（工作日）", "suffix: 工作日"),
    "yellow": ("黄色预警", "short"),
    "red": ("红色预警", "short"),
    "escalated": ("督办", "short"),
    "complaints": ("投诉", "short"),
    "complaints_per_1000": ("每千件投诉", "short"),
    "supplement_rate": ("补正率", "percentunit"),
}

ITEM = 'item=~"$item"'
PERIOD = 'period=~"$period"'
MONTHS = f'period=~"{MONTH_PERIODS}"'
SCORE_STEPS = ((None, "red"), (60, "orange"), (80, "yellow"), (90, "green"))


def _indicator(name: str, period: str = PERIOD) -> str:
    return f'jiancha_indicator{{indicator="{name}", {DEPT}, {ITEM}, {period}}}'


def _indicator_table() -> list:  # type: ignore[type-arg]
    refs = [chr(ord("A") + i) for i in range(len(INDICATORS))]
    targets = [table_target(f"max by (department, item) ({_indicator(name)})", ref=ref)
               for ref, name in zip(refs, INDICATORS, strict=True)]
    rename = {"department": "部门 department", "item": "事项 item"}
    index = {"department": 0, "item": 1}
    for i, (ref, (name, (zh, _))) in enumerate(zip(refs, INDICATORS.items(), strict=True)):
        rename[f"Value #{ref}"] = f"{zh} {name}"
        index[f"Value #{ref}"] = i + 2
    panel = table_panel(
        "部门与事项指标", "Every indicator of the selected period by department (the "
        "department's total when all items are selected) or by department and item: "
        "received, accepted, decided, on-time rate (decided within the promise), early rate (≤ 50 % "
        "of the promise), overdue rate (legal limit broken), mean and p90 counted working "
        "days to decision, yellow / red / escalated alerts, complaints and complaints per "
        "1,000 cases, supplement rate.",
        targets, w=24, h=10,
        transformations=[
            transformation("merge", {}),
            transformation("organize", {"excludeByName": {"Time": True},
                                        "indexByName": index, "renameByName": rename}),
        ])
    for ref, (name, (zh, unit)) in zip(refs, INDICATORS.items(), strict=True):
        del ref
        panel = panel.override_by_name(f"{zh} {name}",
                                       [dm.DynamicConfigValue(id_val="unit", value=unit)])
    return [panel]


def build() -> dm.Dashboard:
    d = new_dashboard(
        UID, "绩效评估",
        "Performance evaluation (绩效评估): per-department scores out of 100 with ranking, "
        "every indicator by department and item, and monthly trends.",
        refresh="1m", time_from="now-90d",
        variables=[
            department_variable(),
            query_variable("item", "事项",
                           "Approval item (事项) code; All = the department's total",
                           'label_values(jiancha_indicator{department=~"$department"}, item)',
                           all_value=DEPARTMENT_TOTAL),
            query_variable("period", "期间",
                           "Evaluation period: a month, quarter, half-year or year",
                           "label_values(jiancha_score, period)", multi=False,
                           include_all=False, sort=dm.VariableSort.ALPHABETICAL_DESC),
        ])
    lay = Layout(d)

    lay.row("得分与排名")
    lay.add(
        bargauge_panel(
            "综合得分排名", "Score out of 100 for the selected period, departments ranked "
            "from best to worst (start at 100; yellow −5, red −10, escalated −15, up to +5 "
            "for early completion; weights and caps are configuration).",
            [target(f"sort_desc(max by (department) (jiancha_score{{{DEPT}, {PERIOD}}}))",
                    "{{department}}", instant=True)],
            w=12, h=9, unit="none", steps=SCORE_STEPS, min_val=0, max_val=100),
        table_panel(
            "得分排名表", "Scores for the selected period as a table, best first.",
            [table_target(f"sort_desc(max by (department, period) (jiancha_score{{{DEPT}, {PERIOD}}}))")],
            w=12, h=9, unit="none",
            transformations=[
                transformation("sortBy", {"sort": [{"field": "Value", "desc": True}]}),
                transformation("organize", {
                    "excludeByName": {"Time": True},
                    "renameByName": {"department": "部门 department", "period": "期间 period",
                                     "Value": "得分 score"}}),
            ]),
    )

    lay.row("指标")
    lay.add(*_indicator_table())
    lay.add(
        bargauge_panel(
            "按时办结率", "On-time rate: share of decisions made within the promised limit, "
            "by department and item, best first.",
            [target(f'sort_desc(max by (department, item) ({_indicator("on_time_rate")}))',
                    "{{department}} {{item}}", instant=True)],
            w=8, h=9, unit="percentunit", max_val=1,
            steps=((None, "red"), (0.8, "yellow"), (0.95, "green"))),
        bargauge_panel(
            "超期率", "Overdue rate: share of cases whose legal limit was broken, by "
            "department and item, worst first.",
            [target(f'sort_desc(max by (department, item) ({_indicator("overdue_rate")}))',
                    "{{department}} {{item}}", instant=True)],
            w=8, h=9, unit="percentunit", max_val=1,
            steps=((None, "green"), (0.01, "yellow"), (0.05, "red"))),
        bargauge_panel(
            "平均用时（工作日）", "Mean counted working days from acceptance to decision, by "
            "department and item, slowest first.",
            [target(f'sort_desc(max by (department, item) ({_indicator("mean_days")}))',
                    "{{department}} {{item}}", instant=True)],
            w=8, h=9, unit="suffix: 工作日"),
    )

    lay.row("月度趋势")
    lay.add(
        barchart_panel(
            "月度得分", "Monthly scores by department, one group of bars per month of the "
            "dashboard's time range (the last value exported for each month).",
            [table_target("max by (department, period) (last_over_time("
                          f"jiancha_score{{{DEPT}, {MONTHS}}}[$__range]))")],
            x_field="period\\department", w=12, h=9, unit="none", max_val=100,
            transformations=[
                transformation("groupingToMatrix", {"rowField": "period",
                                                    "columnField": "department",
                                                    "valueField": "Value"}),
                transformation("sortBy", {"sort": [{"field": "period\\department"}]}),
            ]),
        timeseries_panel(
            "按时办结率（按月）", "On-time rate of each month by department and item, as "
            "it evolves during the month.",
            [target(f'max by (department, item, period) ({_indicator("on_time_rate", MONTHS)})',
                    "{{department}} {{item}} {{period}}")],
            w=12, h=9, unit="percentunit"),
    )
    lay.add(
        timeseries_panel(
            "预警与督办（按月）", "Yellow, red and escalated alert counts of each month by "
            "department and item.",
            [target("max by (department, item, indicator, period) (jiancha_indicator"
                    f'{{indicator=~"yellow|red|escalated", {DEPT}, {ITEM}, {MONTHS}}})',
                    "{{department}} {{item}} {{indicator}} {{period}}")],
            w=12, h=9),
        timeseries_panel(
            "每千件投诉（按月）", "Complaints per 1,000 cases of each month by department "
            "and item.",
            [target(f'max by (department, item, period) ({_indicator("complaints_per_1000", MONTHS)})',
                    "{{department}} {{item}} {{period}}")],
            w=12, h=9),
    )
    return lay.build()
