"""The stock-Faust baseline of ``jiancha bench``: a minimal agent that only parses each
event (no rules, no state). Run as a subprocess; writes its figures as JSON to ``--out``."""

from __future__ import annotations

import argparse
import json
import os
import time

import faust
import orjson


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--web-port", type=int, default=0)
    args = ap.parse_args()

    app = faust.App(f"bench-faust-{os.getpid()}", broker=f"kafka://{args.broker}",
                    store="memory://", web_enabled=False, consumer_auto_offset_reset="earliest",
                    key_serializer="raw", value_serializer="raw", autodiscover=False,
                    broker_rebalance_timeout=4, broker_session_timeout=10,
                    datadir=f"/tmp/bench-faust-{os.getpid()}")
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes)
    seen = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def parse(stream: faust.StreamT) -> None:
        async for value in stream:
            orjson.loads(value)
            seen["n"] += 1
            if seen["n"] == 1:
                seen["first"] = time.perf_counter()
            if seen["n"] >= args.count:
                elapsed = time.perf_counter() - seen["first"]
                with open(args.out, "w") as f:
                    json.dump({"events": seen["n"], "seconds": elapsed}, f)
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING")
    worker.spinner = None  # as the jiancha worker runs (the spinner turns on DEBUG logging)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
