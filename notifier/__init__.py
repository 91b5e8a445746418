"""The notifier (``jiancha notifier``): alert lifecycle and notifications that reach people.

A separate process from the stream worker: it reads ``jc:alerts`` through a Redis
consumer group, routes each alert (``routing.py``), groups, queues durably per channel
(``queue.py``) and delivers (``webhook.py``, ``mail.py``, ``stream.py``) with retries;
it also serves the HTTP API for people (``api.py``) and the alert pages (``pages.py``, the
counted-time chart in ``casechart.py``). See docs/notifications.md and docs/pages.md.
"""

if __name__ != "jiancha.notifier":  # one copy of the module, under the installed name only
    raise ImportError(f"import jiancha.notifier, not {__name__}: notifier/ is installed under jiancha.")
