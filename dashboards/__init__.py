"""Grafana dashboards and Prometheus configuration as code."""
