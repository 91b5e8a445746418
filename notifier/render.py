"""What a notification says: the JSON payload (webhook, stream) and the texts in Chinese and
English (email), from the queued :class:`Notification` and the alerts as they are now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .pages import alert_page_url
from .types import Notification, Outbound

PAYLOAD_VERSION = 1
MAX_ALERTS_IN_TEXT = 50

_SEVERITY = {
    "yellow": ("黄色预警", "yellow warning"),
    "red": ("红色告警", "red alert"),
    "escalated": ("督办", "escalated"),
}
_TRANSITION = {
    "open": ("新告警", "new"),
    "escalated": ("升级督办", "escalated to the supervision bureau"),
    "retracted": ("撤销：后报事件表明告警不成立", "retracted: a later event shows it did not happen"),
    "repeat": ("仍未处理，再次提醒", "still open, reminder"),
    "resolved": ("已解决", "resolved"),
}
_STATUS = {"open": ("未处理", "open"), "acknowledged": ("已确认", "acknowledged"),
           "resolved": ("已解决", "resolved"), "retracted": ("已撤销", "retracted")}


def render(n: Notification, alerts: Sequence[Mapping[str, Any]], now: datetime,
           public_url: str | None = None) -> Outbound:
    """``alerts``: the current alert JSON (with ``status``) of each item, in item order;
    a missing one is given as ``{"alert_id": …}``. ``public_url``: the notifier's address as
    people reach it; each alert then carries the link to its page (``url``)."""
    urls = {a["alert_id"]: alert_page_url(public_url, a["alert_id"]) for a in alerts} if public_url else {}
    sev_zh, sev_en = _SEVERITY.get(n.severity, (n.severity, n.severity))
    tr_zh, tr_en = _TRANSITION[n.transition]
    dept = n.department or "-"
    count = len(alerts)
    subject = {
        "zh": f"【行政审批电子监察】{dept} {n.rule} {sev_zh} {count} 条（{tr_zh}）",
        "en": f"[jiancha] {dept} {n.rule}: {count} {sev_en}{'s' if count != 1 else ''} ({tr_en})",
    }
    lines_zh = [subject["zh"], ""]
    lines_en = [subject["en"], ""]
    for a in list(alerts)[:MAX_ALERTS_IN_TEXT]:
        st_zh, st_en = _STATUS.get(str(a.get("status")), (a.get("status"), a.get("status")))
        lines_zh.append(f"- {a.get('message_zh', a['alert_id'])}")
        lines_zh.append(f"  依据：{a.get('legal_basis', '-')}；办件：{a.get('case_id') or '-'}；"
                        f"状态：{st_zh}；告警编号：{a['alert_id']}")
        lines_en.append(f"- {a.get('message_en', a['alert_id'])}")
        lines_en.append(f"  basis: {a.get('legal_basis', '-')}; case: {a.get('case_id') or '-'}; "
                        f"status: {st_en}; alert: {a['alert_id']}")
        if a.get("resolved_by") and a.get("status") == "resolved":
            lines_zh.append(f"  解决人：{a['resolved_by']}")
            lines_en.append(f"  resolved by: {a['resolved_by']}")
        if a["alert_id"] in urls:
            lines_zh.append(f"  查看：{urls[a['alert_id']]}")
            lines_en.append(f"  page: {urls[a['alert_id']]}")
    if count > MAX_ALERTS_IN_TEXT:
        lines_zh.append(f"……另有 {count - MAX_ALERTS_IN_TEXT} 条，详见 jiancha alerts list")
        lines_en.append(f"… and {count - MAX_ALERTS_IN_TEXT} more: see jiancha alerts list")
    footer_zh = f"通知编号 {n.notification_id}；确认：jiancha alerts ack <告警编号>"
    footer_en = f"notification {n.notification_id}; acknowledge: jiancha alerts ack <alert id>"
    lines_zh += ["", footer_zh]
    lines_en += ["", footer_en]
    transitions = {i.alert_id: i.transition for i in n.items}
    payload = {
        "version": PAYLOAD_VERSION,
        "notification_id": n.notification_id,
        "receiver": n.receiver,
        "channel": n.channel,
        "transition": n.transition,
        "group": {"department": n.department, "rule": n.rule, "severity": n.severity,
                  "key": n.group_key},
        "count": count,
        "sent_at": now.isoformat(),
        "title_zh": subject["zh"],
        "title_en": subject["en"],
        "alerts": [{**a, "transition": transitions.get(a["alert_id"], n.transition),
                    **({"url": urls[a["alert_id"]]} if a["alert_id"] in urls else {})}
                   for a in alerts],
    }
    return Outbound(n, payload, subject, {"zh": "\n".join(lines_zh), "en": "\n".join(lines_en)})
