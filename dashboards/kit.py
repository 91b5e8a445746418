"""Small helpers over ``grafana-foundation-sdk`` shared by the three dashboards.

Every panel gets a Chinese title and an English description (``desc``), reads the
Prometheus datasource chosen by the ``datasource`` template variable (provisioned with uid
``prometheus``), and gets an explicit id so that the generated JSON is stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from .names import DATASOURCE_VARIABLE, DEFAULT_DATASOURCE_UID, TAGS

DS = dm.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")

#: department filter used by every panel that has a department label
DEPT = 'department=~"$department"'

Panel = cogbuilder.Builder[dm.Panel]


def target(expr: str, legend: str | None = None, *, ref: str = "A", instant: bool = False,
           fmt: PromQueryFormat | None = None) -> prometheus.Dataquery:
    """One PromQL query. ``instant`` queries are evaluated once at the end of the range
    (tables, bar gauges, rankings); the others are range queries (time series)."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    q = q.instant() if instant else q.range()
    if legend is not None:
        q = q.legend_format(legend)
    if fmt is not None:
        q = q.format(fmt)
    return q


def table_target(expr: str, *, ref: str = "A") -> prometheus.Dataquery:
    return target(expr, ref=ref, instant=True, fmt=PromQueryFormat.TABLE)


def transformation(id_: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_, options=options)


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def color_override(name: str, color: str) -> tuple[str, list[dm.DynamicConfigValue]]:
    return name, [dm.DynamicConfigValue(id_val="color",
                                        value={"mode": "fixed", "fixedColor": color})]


def _common(p, title: str, desc: str, targets: Iterable[prometheus.Dataquery],  # type: ignore[no-untyped-def]
            w: int, h: int, unit: str | None):
    p = p.title(title).description(desc).datasource(DS).span(w).height(h)
    for t in targets:
        p = p.with_target(t)
    if unit is not None:
        p = p.unit(unit)
    return p


def stat_panel(title: str, desc: str, targets: Sequence[prometheus.Dataquery], *, w: int = 4,
               h: int = 4, unit: str | None = "short",
               steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
               graph: bool = True) -> stat.Panel:
    p = _common(stat.Panel(), title, desc, targets, w, h, unit)
    return (p.thresholds(thresholds(*steps))
            .color_mode(common_models.BigValueColorMode.VALUE)
            .graph_mode(common_models.BigValueGraphMode.AREA if graph
                        else common_models.BigValueGraphMode.NONE)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def legend(as_table: bool = False) -> common.VizLegendOptions:
    return (common.VizLegendOptions().show_legend(True)
            .display_mode(common_models.LegendDisplayMode.TABLE if as_table
                          else common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.RIGHT if as_table
                       else common_models.LegendPlacement.BOTTOM)
            .calcs(["lastNotNull", "max"] if as_table else []))


def timeseries_panel(title: str, desc: str, targets: Sequence[prometheus.Dataquery], *,
                     w: int = 12, h: int = 8, unit: str | None = "short", stacked: bool = False,
                     table_legend: bool = False, min_zero: bool = True) -> timeseries.Panel:
    p = _common(timeseries.Panel(), title, desc, targets, w, h, unit)
    p = p.legend(legend(table_legend)).fill_opacity(20 if stacked else 8).line_width(1)
    if min_zero:
        p = p.min(0)
    if stacked:
        p = p.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    return p


def bargauge_panel(title: str, desc: str, targets: Sequence[prometheus.Dataquery], *,
                   w: int = 12, h: int = 8, unit: str | None = "short",
                   steps: Sequence[tuple[float | None, str]] = ((None, "blue"),),
                   min_val: float | None = 0, max_val: float | None = None) -> bargauge.Panel:
    p = _common(bargauge.Panel(), title, desc, targets, w, h, unit)
    p = (p.orientation(common_models.VizOrientation.HORIZONTAL)
         .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
         .value_mode(common_models.BarGaugeValueMode.TEXT)
         .show_unfilled(True)
         .thresholds(thresholds(*steps))
         .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return p


def table_panel(title: str, desc: str, targets: Sequence[prometheus.Dataquery], *,
                w: int = 12, h: int = 8, unit: str | None = None,
                transformations: Sequence[dm.DataTransformerConfig] = ()) -> table.Panel:
    p = _common(table.Panel(), title, desc, targets, w, h, unit)
    for t in transformations:
        p = p.with_transformation(t)
    return p.footer(common.TableFooterOptions().show(False).reducer(["sum"]))


def barchart_panel(title: str, desc: str, targets: Sequence[prometheus.Dataquery], *,
                   x_field: str, w: int = 12, h: int = 8, unit: str | None = None,
                   transformations: Sequence[dm.DataTransformerConfig] = (),
                   min_val: float | None = 0, max_val: float | None = None) -> barchart.Panel:
    p = _common(barchart.Panel(), title, desc, targets, w, h, unit)
    for t in transformations:
        p = p.with_transformation(t)
    p = (p.x_field(x_field).orientation(common_models.VizOrientation.VERTICAL)
         .show_value(common_models.VisibilityMode.AUTO).legend(legend()).fill_opacity(80))
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    return p


# --- template variables --------------------------------------------------------------------


def datasource_variable() -> dashboard.DatasourceVariable:
    return (dashboard.DatasourceVariable(DATASOURCE_VARIABLE).label("数据源")
            .description("Prometheus datasource (provisioned with uid 'prometheus')")
            .type("prometheus")
            .current(dm.VariableOption(text="Prometheus", value=DEFAULT_DATASOURCE_UID,
                                       selected=True)))


def query_variable(name: str, label: str, description: str, query: str, *,
                   multi: bool = True, include_all: bool = True, all_value: str = ".*",
                   sort: dm.VariableSort = dm.VariableSort.ALPHABETICAL_ASC
                   ) -> dashboard.QueryVariable:
    v = (dashboard.QueryVariable(name).label(label).description(description)
         .datasource(DS).query(query).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(sort).multi(multi).include_all(include_all))
    if include_all:
        v = v.all_value(all_value).current(dm.VariableOption(text="All", value="$__all",
                                                        selected=True))
    return v


def department_variable() -> dashboard.QueryVariable:
    return query_variable(
        "department", "部门",
        "Department (部门): every department that has sent events",
        "label_values(jiancha_events_ingested_total, department)")


#: the notifier's address as people reach it: its alert pages are the panels' data links
NOTIFIER_VARIABLE = "notifier"
DEFAULT_NOTIFIER_URL = "http://127.0.0.1:6067"


def notifier_variable() -> dashboard.TextBoxVariable:
    """Where the alert pages are (``JIANCHA_NOTIFIER_PUBLIC_URL``); hidden, set per site with
    ``?var-notifier=…`` or in the provisioned JSON."""
    return (dashboard.TextBoxVariable(NOTIFIER_VARIABLE).label("告警页面")
            .description("The notifier's public URL (JIANCHA_NOTIFIER_PUBLIC_URL): the alert "
                         "list and case pages the panels link to")
            .default_value(DEFAULT_NOTIFIER_URL).hide(dm.VariableHide.HIDE_VARIABLE)
            .current(dm.VariableOption(text=DEFAULT_NOTIFIER_URL, value=DEFAULT_NOTIFIER_URL,
                                       selected=True)))


def alert_pages_link(title: str, **filters: str) -> dashboard.DashboardLink:
    """A data link to the notifier's alert list with ``filters`` (values may be Grafana
    interpolations such as ``${__field.labels.department}``)."""
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    url = f"${{{NOTIFIER_VARIABLE}}}/alerts" + (f"?{query}" if query else "")
    return (dashboard.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url)
            .target_blank(True))


def dashboard_links() -> list[dashboard.DashboardLink]:
    return [dashboard.DashboardLink("jiancha").type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["jiancha"]).as_dropdown(True).include_vars(True).keep_time(True)]


def new_dashboard(uid: str, title: str, description: str, *, refresh: str, time_from: str,
                  variables: Sequence[cogbuilder.Builder[dm.VariableModel]]) -> dashboard.Dashboard:
    d = (dashboard.Dashboard(title).uid(uid).description(description).tags(TAGS)
         .timezone("Asia/Shanghai").refresh(refresh).time(time_from, "now").readonly()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).links(dashboard_links()))  # type: ignore[arg-type]
    for v in (datasource_variable(), *variables, notifier_variable()):
        d = d.with_variable(v)
    return d


class Layout:
    """Adds rows and panels to a dashboard, numbering panel ids 1, 2, 3, … in order."""

    def __init__(self, d: dashboard.Dashboard) -> None:
        self.d = d
        self.next_id = 1

    def row(self, title: str) -> Layout:
        self.d = self.d.with_row(dashboard.Row(title).id(self.next_id))
        self.next_id += 1
        return self

    def add(self, *panels: Panel) -> Layout:
        for p in panels:
            self.d = self.d.with_panel(p.id(self.next_id))  # type: ignore[attr-defined]
            self.next_id += 1
        return self

    def build(self) -> dm.Dashboard:
        return self.d.build()
