"""Run the Faust worker for the given settings (``jiancha worker``)."""

from __future__ import annotations

import faust

from agents.app import create_app
from settings import Settings


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
