"""The benchmark's inputs: realistic tickets and a long e-mail, built the same way everywhere.

Kept free of torch and of the service's code so the orchestrator (bench/run.py) stays light and
the in-process and HTTP measurements read exactly the same texts.
"""
from __future__ import annotations

import json
from pathlib import Path

LONG_EMAIL_CHARS = 20_000  # the service's default SMART_SUPPORT_MAX_DESCRIPTION_CHARS


def read_tickets(path: Path) -> list[dict]:
    """Tickets of a JSONL file (data/test.jsonl: subject, description, category, urgency)."""
    tickets = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()
               if line.strip()]
    if not tickets:
        raise ValueError(f"{path}: no tickets")
    return tickets


def request_body(ticket: dict) -> str:
    """The POST /classify body a client would send for this ticket (labels left out)."""
    body = {"subject": ticket.get("subject") or "", "description": ticket["description"]}
    if ticket.get("id"):
        body["ticket_id"] = str(ticket["id"])
    return json.dumps(body, ensure_ascii=False)


def long_email(tickets: list[dict]) -> tuple[str, str]:
    """(subject, description) of a 20,000-character e-mail thread.

    A short new message on top of earlier messages quoted with "> ", as a mail client does,
    built from the test tickets so the vocabulary is realistic. The service keeps the head and
    the tail of its token budget, where the greeting and the latest ask are."""
    parts = ["Hi support,\n\nSee the whole thread below, nothing has been fixed yet. "
             "Please escalate today.\n\nThanks,\nSam\n"]
    size, i = len(parts[0]), 0
    while size < LONG_EMAIL_CHARS:
        ticket = tickets[i % len(tickets)]
        quoted = "\n".join("> " + line for line in ticket["description"].splitlines())
        part = (f"\nOn Mon, 3 Nov 2025, customer wrote:\n> Subject: {ticket.get('subject', '')}"
                f"\n{quoted}\n")
        parts.append(part)
        size += len(part)
        i += 1
    return "Re: Re: Re: still broken after three weeks", "".join(parts)[:LONG_EMAIL_CHARS]


def percentile(values, q: float) -> float:
    """Nearest-rank percentile; enough for the few hundred samples used here."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
