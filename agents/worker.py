"""Run the Faust worker for the given settings (``jiancha worker``)."""

from __future__ import annotations

import sys

import faust

from jiancha.rules.collector import tune_collector
from jiancha.settings import WorkerSettings

from .app import create_app
from .topics import ensure_topics_sync


def run_worker(settings: WorkerSettings, loglevel: str = "INFO") -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics_sync(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel)
    # Faust's start-up spinner sets the root logger to DEBUG (to spin on every record) when
    # the level is WARNING or above: every library debug call then builds a record. A
    # service has no terminal to spin on.
    worker.spinner = None
    tune_interpreter(settings)
    worker.execute_from_commandline()


def tune_interpreter(settings: WorkerSettings) -> None:
    """Two interpreter settings for a long-lived, busy process:

    - collect the youngest generation less often, and leave what start-up made (modules,
      the app) out of the full collections (``rules/collector.py``, as replay does): a
      batch taken from a backlog is a whole fetch, whose records, events and facts live
      until the batch ends, so a threshold below that wave sets off collections that
      traverse the whole batch, in long pauses;
    - let a thread hold the GIL longer before it is asked to hand it over: Faust's
      consumer fetches in a thread of its own, and with Python's 5 ms it interrupts the
      agent's batch every 5 ms while it has records to take in.

    ``docs/performance.md`` gives what each costs and gains.
    """
    tune_collector(settings.gc_young_threshold)
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
