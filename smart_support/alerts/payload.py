"""What an alert says, per receiver format, with personal data masked. Pure functions."""
from __future__ import annotations

import re

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


def alert_body(alert: dict, fmt: str) -> dict:
    """The JSON body for one receiver. `alert` holds id, category, urgency, confidence,
    ticket_id, preview and created_at."""
    line = (f"Urgent {alert['category']} ticket {alert['ticket_id'] or '(no id)'}: urgency "
            f"{alert['urgency']:.2f}, confidence {alert['confidence']:.2f} - {alert['preview']}")
    if fmt == "slack":
        return {"text": line, "alert_id": alert["id"]}
    if fmt == "discord":
        return {"content": line[:2000], "alert_id": alert["id"]}
    return {"type": "urgent_ticket", **alert}
