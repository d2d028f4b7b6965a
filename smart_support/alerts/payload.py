"""What an alert says, per receiver format, with personal data masked. Pure functions."""
from __future__ import annotations

import re
from datetime import datetime, timezone

PREVIEW_CHARS = 200
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(r"(?<![\w])\+?\d[\d ().-]{6,}\d(?![\w])")
FORMATS = ("generic", "slack", "discord")


def mask(text: str) -> str:
    """E-mail addresses, card numbers and phone numbers replaced by placeholders."""
    text = EMAIL.sub("[email]", text)
    text = CARD.sub("[card]", text)
    return PHONE.sub("[phone]", text)


def preview(subject: str, description: str) -> str:
    text = " ".join(f"{subject} {description}".split())
    text = mask(text)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


def parse_target(entry: str) -> tuple[str, str]:
    """'slack+https://hooks...' -> ('slack', 'https://hooks...'); a bare URL is generic."""
    head, _, rest = entry.partition("+")
    if rest and head in FORMATS:
        return head, rest
    return "generic", entry


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ticket_alert(ticket_id: str | None, subject: str, description: str, result,
                 model_version: str | None) -> dict:
    """An urgent ticket's alert; `result` is the TriageResult."""
    return {"type": "urgent_ticket", "category": result.category,
            "urgency": round(result.urgency_score, 4),
            "confidence": round(result.confidence, 4), "ticket_id": ticket_id,
            "preview": preview(subject, description), "model_version": model_version,
            "created_at": _stamp()}


def incident_alert(incident_id: int, category: str, ticket_count: int, subject: str,
                   description: str) -> dict:
    """One alert for a storm, in place of its tickets' individual alerts."""
    return {"type": "incident", "incident_id": incident_id, "category": category,
            "ticket_count": ticket_count, "preview": preview(subject, description),
            "created_at": _stamp()}


def alert_body(alert: dict, fmt: str) -> dict:
    """The JSON body for one receiver: `alert` is a ticket_alert or an incident_alert with
    its id added."""
    if alert.get("type") == "incident":
        line = (f"Incident #{alert['incident_id']} ({alert['category']}): "
                f"{alert['ticket_count']} similar tickets within minutes - {alert['preview']}")
    else:
        line = (f"Urgent {alert['category']} ticket {alert['ticket_id'] or '(no id)'}: urgency "
                f"{alert['urgency']:.2f}, confidence {alert['confidence']:.2f} - "
                f"{alert['preview']}")
    if fmt == "slack":
        return {"text": line, "alert_id": alert["id"]}
    if fmt == "discord":
        return {"content": line[:2000], "alert_id": alert["id"]}
    return {"type": "urgent_ticket", **alert}
