"""The Faust worker: app, agents, sinks and metrics."""

if __name__ != "jiancha.agents":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.agents, not {__name__}: agents/ is installed under jiancha.")
