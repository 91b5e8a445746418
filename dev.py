#!/usr/bin/env python3
"""Bootstrap and run jiancha on a fresh machine that has only Python 3.11+.

    python3 dev.py demo     # embedded broker + Redis + worker + simulator, alerts live
    python3 dev.py test     # the whole test suite
    python3 dev.py bench    # the benchmark (when available)
    python3 dev.py jiancha ARGS...   # any jiancha command inside the project's venv

It creates ``.venv`` beside this file and installs the project into it (again only when
pyproject.toml, setup.py or the C source of the rules changed), so nothing has to be
installed by hand.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".jiancha-installed"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under any python3
        sys.exit(f"jiancha needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    # installed again when what the install reads changes: the project, or the C source of
    # the compiled part of the rules (built in place by the editable install)
    wanted = hashlib.sha256(b"".join((ROOT / name).read_bytes() for name in (
        "pyproject.toml", "setup.py", "rules/_native.c"))).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and (BIN / "jiancha").exists():
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing jiancha and its dependencies (about a minute) ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}[engine,test]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "test":
        cmd = [str(BIN / "python"), "-m", "pytest", *rest]
    elif command in ("demo", "bench"):
        cmd = [str(BIN / "jiancha"), command, *rest]
    elif command == "jiancha":
        cmd = [str(BIN / "jiancha"), *rest]
    else:
        print(f"dev.py: unknown command {command!r}; expected demo, test, bench or jiancha",
              file=sys.stderr)
        return 2
    try:
        return subprocess.call(cmd, cwd=ROOT)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
