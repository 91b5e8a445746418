"""The alert lifecycle as pure rules: which status changes are allowed, and when an alert's
cause has ended so that it may be resolved automatically.

Statuses (contract.md): ``open`` → ``acknowledged`` → ``resolved`` (``open`` → ``resolved``
directly too). The store (``notifier/store.py``) applies a change atomically in Redis
and records who, when and why in the alert's history; this module only decides.

Auto-resolve (:func:`auto_resolvable`): a *warning* (yellow) whose cause ended is resolved
by jiancha itself, with the reason in the history. A *violation* (red, escalated) is never
resolved automatically: a broken limit stays on record even when the case is decided
later, and a fee or a conflict of duties is corrected only when the bureau resolves it.
"""

from __future__ import annotations

from typing import Literal

from jiancha.producers.contract import Alert, AlertStatus, Step

from .checks.deadlines import promise_broken
from .findings import CaseView

Action = Literal["acknowledge", "resolve"]

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], AlertStatus]] = {
    "acknowledge": (frozenset({"open"}), "acknowledged"),
    "resolve": (frozenset({"open", "acknowledged"}), "resolved"),
}

#: who resolves automatically (recorded in the history as ``by``)
AUTO_RESOLVER = "jiancha"


class TransitionError(ValueError):
    """The alert's status does not allow this action (e.g. acknowledging a resolved alert)."""

    def __init__(self, action: str, current: str) -> None:
        allowed = TRANSITIONS[action][0] if action in TRANSITIONS else frozenset()
        super().__init__(
            f"cannot {action} an alert that is {current} (only from {', '.join(sorted(allowed))})")
        self.action = action
        self.current = current


def next_status(current: str, action: str) -> AlertStatus:
    """The status after ``action``, or :class:`TransitionError`."""
    if action not in TRANSITIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(TRANSITIONS)}")
    sources, target = TRANSITIONS[action]
    if current not in sources:
        raise TransitionError(action, current)
    return target


def _ended_reason(view: CaseView) -> tuple[str, str] | None:
    """(zh, en) of how the case's decision clock ended, or None while it runs."""
    ended = view.ended
    if ended is None:
        return None
    if ended.step is Step.withdrawn:
        return "申请人已撤回申请", "the applicant withdrew the application"
    if ended.step is Step.rejected_at_intake:
        return "已作出不予受理决定", "the application was refused at intake"
    return "已作出决定", "a decision was made"


def auto_resolvable(alert: Alert, view: CaseView) -> str | None:
    """Why ``alert`` may be resolved automatically given its case's facts, or None.

    - ``deadline.approaching``: the case ended (decision, refusal, withdrawal) within the
      promised limit; or it ended after the limit, when ``deadline.promise_broken`` (red,
      kept on record) supersedes the warning.
    - ``intake.deemed_accepted``: the acceptance came (late) or the case ended; the deemed
      acceptance stays documented in the alert itself.
    - every red or escalated alert, and every other rule: None (violations are resolved by
      people; the other warnings describe something that happened and cannot end).
    """
    if alert.status == "resolved" or alert.severity != "yellow":
        return None
    if alert.case_id is not None and alert.case_id != view.case_id:
        return None
    if alert.rule == "deadline.approaching":
        ended = _ended_reason(view)
        if ended is None:
            return None
        broken = next(iter(promise_broken(view, {})), None)
        if broken is None:
            return f"承诺时限内{ended[0]} / {ended[1]} within the promised limit"
        return (f"{ended[0]}，但已超过承诺时限，由 deadline.promise_broken 记录 / {ended[1]} after "
                "the promised limit; superseded by deadline.promise_broken")
    if alert.rule == "intake.deemed_accepted":
        if view.first(Step.accepted) is not None:
            return "已补办受理 / the application has since been accepted"
        ended = _ended_reason(view)
        if ended is not None:
            return f"办件已结束：{ended[0]} / the case ended: {ended[1]}"
        return None
    return None
