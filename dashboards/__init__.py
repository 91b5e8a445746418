"""Grafana dashboards and Prometheus configuration as code."""

if __name__ != "jiancha.dashboards":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.dashboards, not {__name__}: dashboards/ is installed under jiancha.")
