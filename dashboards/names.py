"""Names shared by the dashboards, Grafana provisioning and ``jiancha dashboards push``
(no dependency: pushing needs no grafana-foundation-sdk)."""

from __future__ import annotations

#: uid of the datasource in deploy/grafana/provisioning/datasources/prometheus.yml
DEFAULT_DATASOURCE_UID = "prometheus"
#: the template variable every panel takes its datasource from
DATASOURCE_VARIABLE = "datasource"
#: the dashboards' folder (also in deploy/grafana/provisioning/dashboards/jiancha.yml)
FOLDER_UID = "jiancha"
FOLDER_TITLE = "jiancha 电子监察"
TAGS = ["jiancha", "电子监察"]
