"""Rule engine, item catalog and calendar: plain Python, no Faust, shared by the worker,
replay and tests."""
