"""Run the Faust worker for the given settings (``jiancha worker``)."""

from __future__ import annotations

import gc
import sys

import faust

from agents.app import create_app
from agents.topics import ensure_topics_sync
from settings import Settings


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
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


def tune_interpreter(settings: Settings) -> None:
    """Two interpreter settings for a long-lived, busy process (each measured with
    ``jiancha bench``):

    - collect the youngest generation less often, and leave what start-up made (modules,
      the app) out of the full collections: a busy worker spent ~15% of its time in the
      collector, ~18% more events/s without. The threshold counts objects made less
      objects freed, so it is set above what one batch makes and frees again (a whole
      fetch): from 50,000 to 1,000,000, ~11% more events/s on a backlog, and no more
      collections set off by a batch (they traversed it, in pauses of up to ~230 ms);
    - let a thread hold the GIL longer before it is asked to hand it over: Faust's
      consumer fetches in a thread of its own, and with Python's 5 ms it interrupted the
      agent's batch every 5 ms while it had records to take in (~6–10% more events/s at
      20 ms; 50 and 200 ms gained no more).
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, older, oldest)
    gc.freeze()
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
