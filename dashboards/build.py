"""Generate the Grafana dashboards' JSON from the code in this package.

    python -m jiancha.dashboards.build            # (re)write dashboards/json/*.json
    python -m jiancha.dashboards.build --check    # exit 1 when the committed JSON is out of date

(also ``jiancha dashboards build [--check]``). The JSON is committed: Grafana provisions it
from dashboards/json/ (deploy/grafana/provisioning/dashboards/jiancha.yml) and
``jiancha dashboards push`` uploads it to an existing Grafana.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

JSON_DIR = Path(__file__).resolve().parent / "json"


def _builders() -> dict[str, Callable[[], Any]]:
    from . import evaluation, health, live

    return {
        "jiancha-live.json": live.build,
        "jiancha-evaluation.json": evaluation.build,
        "jiancha-health.json": health.build,
    }


def render() -> dict[str, str]:
    """File name -> JSON text (sorted keys, two-space indent, UTF-8, trailing newline)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    out = {}
    for name, build in _builders().items():
        # through the SDK's encoder, then plain dicts, so the text does not depend on it
        data = json.loads(json.dumps(build(), cls=JSONEncoder))
        out[name] = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard model, as generated."""
    return {name: json.loads(text) for name, text in render().items()}


def write(out_dir: Path = JSON_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rendered = render()
    for name, text in rendered.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    for stale in sorted(out_dir.glob("*.json")):
        if stale.name not in rendered:
            stale.unlink()
            written.append(stale)
    return written


def check(out_dir: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing, differ from the code, or should not be there."""
    rendered = render()
    problems = []
    for name, text in rendered.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            problems.append(name)
    problems += [p.name for p in sorted(out_dir.glob("*.json")) if p.name not in rendered]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jiancha.dashboards.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="fail when dashboards/json differs from the code")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out)
        if stale:
            print(f"dashboards out of date: {', '.join(stale)}; run 'python -m jiancha.dashboards.build'",
                  file=sys.stderr)
            return 1
        print("dashboards/json matches the code")
        return 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
