"""Rule engine, item catalog and calendar: plain Python, no Faust, shared by the worker,
replay and tests."""

if __name__ != "jiancha.rules":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.rules, not {__name__}: rules/ is installed under jiancha.")
