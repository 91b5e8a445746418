#!/usr/bin/env bash
# Makes the pictures of docs/evaluation.md from real renders (nothing drawn by hand):
# the evaluation report of a simulated half-year, replayed, and the Grafana dashboard
# previews from a real Prometheus fed by the demo's engine (about a minute).
# Needs Debian's chromium and fonts-wqy-zenhei, and prometheus for the previews.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/images
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jiancha() { python3 dev.py jiancha "$@"; }

# six months of the catalog's departments, 3% of the cases with a violation
jiancha simulate --out "$work/half-year.jsonl" --start 2026-01-05T09:00:00+08:00 \
    --cases 4000 --days 120 --violations 0.03 --seed 3
jiancha replay "$work/half-year.jsonl" --until 2026-08-01T00:00:00+08:00 \
    --indicators "$work/indicators.json" > /dev/null
# one picture per chart: report-ranking.png, report-parts.png, report-trend.png, ...
jiancha report --indicators "$work/indicators.json" --period 2026-06 --format png --out "$out"
jiancha report --indicators "$work/indicators.json" --period 2026-06 --format pdf \
    --out "$out/report-2026-06.pdf"
# grafana-evaluation.png, grafana-health.png, grafana-live.png
jiancha dashboards preview --out "$out" --seconds 60
