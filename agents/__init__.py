"""The Faust worker: app, agents, sinks and metrics."""
