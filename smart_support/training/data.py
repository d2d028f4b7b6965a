"""Labelled ticket files: CSV or JSON Lines with subject, description, category, urgency."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("description", "category", "urgency")


class DataError(ValueError):
    """A data file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LabelledTicket:
    subject: str
    description: str
    category: str
    urgency: float
    group: str = ""


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rows(path: Path):
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.DictReader(handle), start=2):
                yield line_no, row
        return
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: each line must be a JSON object")
            yield line_no, row


def load_tickets(path: Path | str, group_field: str | None = None) -> list[LabelledTicket]:
    """Read and validate every row; the first bad row stops loading with its line number.
    `group_field` names a column (e.g. the ticket's author) kept as each ticket's group."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    tickets = []
    for line_no, row in _rows(path):
        missing = [k for k in REQUIRED if row.get(k) in (None, "")]
        if missing:
            raise DataError(f"{path}:{line_no}: missing {', '.join(missing)}")
        try:
            urgency = float(row["urgency"])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{line_no}: urgency {row['urgency']!r} is not a number") from None
        if not 0.0 <= urgency <= 1.0:
            raise DataError(f"{path}:{line_no}: urgency {urgency} is outside [0, 1]")
        description = str(row["description"])
        if not description.strip():
            raise DataError(f"{path}:{line_no}: description is blank")
        group = ""
        if group_field:
            group = str(row.get(group_field) or "").strip()
            if not group:
                raise DataError(f"{path}:{line_no}: missing {group_field}")
        tickets.append(LabelledTicket(str(row.get("subject") or ""), description,
                                      str(row["category"]).strip(), urgency, group))
    if not tickets:
        raise DataError(f"{path}: no tickets")
    return tickets
