"""The department producer library: the wire contract, signing, batching and retries.

It depends on nothing of the engine, so a department installs it alone (`pip install jiancha`).
"""

if __name__ != "jiancha.producers":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.producers, not {__name__}: producers/ is installed under jiancha.")
