"""Run the Faust worker for the given settings (``jiancha worker``)."""

from __future__ import annotations

import faust

from agents.app import create_app
from agents.topics import ensure_topics_sync
from settings import Settings


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics_sync(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    worker.execute_from_commandline()
