"""Labelled ticket files: CSV or JSON Lines with subject, description, category, urgency."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

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


def validation_split(tickets, targets, data: Path | str, group_field: str | None,
                     fraction: float, seed: int):
    """Stratified random split, or, with `group_field`, whole groups (e.g. every ticket of
    one author) held out: a validation set written by someone the model never read
    measures what tickets by outside authors will see, and calibration and the review
    threshold are fitted on it. Returns (train indices, validation indices)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(tickets))
    if not group_field:
        n_val = max(len(set(targets.tolist())), int(round(len(tickets) * fraction)))
        return train_test_split(indices, test_size=n_val, stratify=targets, random_state=seed)
    groups = sorted({t.group for t in tickets})
    if len(groups) < 2:
        raise DataError(f"{data}: --validation-group-field {group_field}"
                        f" needs at least two groups, found {groups}")
    order = np.random.default_rng(seed).permutation(groups)
    target = fraction * len(tickets)
    held, size = [], 0
    for group in order:
        group_size = sum(t.group == group for t in tickets)
        if held and size + group_size > 1.25 * target:
            break
        held.append(str(group))
        size += group_size
    in_val = np.array([t.group in held for t in tickets])
    if len(set(targets[in_val].tolist())) < len(set(targets.tolist())):
        raise DataError(f"{data}: the held-out groups {held} lack a category")
    log.info("validation: groups %s held out (%d tickets)", held, int(in_val.sum()))
    return indices[~in_val], indices[in_val]


def validation_tickets(metadata: dict, data: Path | str | None = None) -> list[LabelledTicket]:
    """A trained model's validation split, rebuilt from its training file (`data`, else the
    path recorded at training) with the settings it was split with; refuses any file other
    than the one the model was trained on."""
    import numpy as np

    training = metadata.get("training_data") or {}
    path = Path(data or training.get("path") or "")
    if not path.is_file():
        raise DataError(f"{path}: the model's training file is not there; pass its path")
    if file_sha256(path) != training.get("sha256"):
        raise DataError(f"{path} is not the file this model was trained on (its SHA-256 "
                        "differs from metadata.json's)")
    recorded = metadata.get("hyperparameters") or {}
    group_field = recorded.get("validation_group_field")
    tickets = load_tickets(path, group_field)
    labels = list(metadata["labels"])
    targets = np.array([labels.index(t.category) for t in tickets])
    _, val_idx = validation_split(tickets, targets, path, group_field,
                                  recorded["validation_fraction"], recorded["seed"])
    if len(val_idx) != training.get("validation_tickets", len(val_idx)):
        raise DataError(f"{path}: rebuilt {len(val_idx)} validation tickets, the model "
                        f"recorded {training.get('validation_tickets')}")
    return [tickets[i] for i in val_idx]
