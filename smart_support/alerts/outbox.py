"""The alert outbox: rows written in the request's transaction, claimed atomically by one
dispatcher at a time with a lease, so a worker killed mid-delivery loses nothing (its lease
expires and another worker, or its replacement, delivers the row). Delivery is at least once;
every alert carries a stable id for receivers to de-duplicate on."""
from __future__ import annotations

import contextlib
import json
import random
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, insert, or_, select, update

from smart_support.alerts.payload import alert_body, parse_target
from smart_support.storage import Storage, alerts

PENDING, DELIVERING, DELIVERED, DEAD = "pending", "delivering", "delivered", "dead"
SUPPRESSED = "suppressed"  # replaced by an incident alert before it went out


class OutboxFull(Exception):
    """The outbox holds its maximum of undelivered rows; nothing was written."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value and value.tzinfo is None else value


class Outbox:
    def __init__(self, storage: Storage, targets: tuple[str, ...], max_pending: int,
                 max_attempts: int, backoff_base: float, backoff_cap: float, lease: float):
        self.storage = storage
        self.targets = [parse_target(t) for t in targets]
        self.max_pending = max_pending
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.lease = lease
        self.dispatcher = None  # this process's Dispatcher, when create_app started one

    @classmethod
    def from_settings(cls, storage: Storage, settings) -> "Outbox":
        return cls(storage, settings.webhook_urls, settings.alert_outbox_max,
                   settings.alert_max_attempts, settings.alert_backoff_seconds,
                   settings.alert_backoff_cap_seconds, settings.alert_lease_seconds)

    def pending_count(self, connection=None) -> int:
        query = select(func.count()).select_from(alerts).where(
            alerts.c.status.in_((PENDING, DELIVERING)))
        with self._connection(connection) as conn:
            return int(conn.execute(query).scalar_one())

    def enqueue(self, alert: dict, connection=None) -> str:
        """Record one alert for every receiver, durably, before the caller answers; inside
        the caller's transaction when `connection` is given."""
        if self.pending_count(connection) >= self.max_pending:
            raise OutboxFull(f"{self.max_pending} alerts are waiting for delivery")
        alert = {"id": alert.get("id") or uuid.uuid4().hex, **alert}
        now = _now()
        rows = [{"alert_id": alert["id"], "url": url, "format": fmt,
                 "body": json.dumps(alert_body(alert, fmt)), "status": PENDING, "attempts": 0,
                 "next_attempt_at": now, "created_at": now} for fmt, url in self.targets]
        if connection is not None:
            connection.execute(insert(alerts), rows)
        else:
            with self.storage.engine.begin() as conn:
                conn.execute(insert(alerts), rows)
        return alert["id"]

    def record(self, alert: dict, connection=None) -> dict:
        """Enqueue, and say what happened: {"id", "status": "queued"}, or "not_recorded" with
        the reason when the outbox is full (never a silent drop). A storage error propagates:
        inside a caller's transaction it must undo the whole request."""
        from smart_support.metrics import ALERTS

        try:
            ref = {"id": self.enqueue(alert, connection), "status": "queued"}
        except OutboxFull as exc:
            ALERTS.labels("not_recorded").inc()
            return {"id": None, "status": "not_recorded", "reason": str(exc)}
        ALERTS.labels("queued").inc()
        return ref

    def suppress(self, alert_ids: list[str], connection) -> int:
        """Withdraw alerts that have not started going out (an incident alert replaces them)."""
        if not alert_ids:
            return 0
        return connection.execute(
            update(alerts).where(alerts.c.alert_id.in_(alert_ids), alerts.c.status == PENDING)
            .values(status=SUPPRESSED, lease_until=None)).rowcount

    def _connection(self, connection):
        return contextlib.nullcontext(connection) if connection is not None \
            else self.storage.engine.connect()

    def claim(self) -> dict | None:
        """Take one due row (or one whose lease expired) for delivery, or None."""
        now = _now()
        due = or_(and_(alerts.c.status == PENDING, alerts.c.next_attempt_at <= now),
                  and_(alerts.c.status == DELIVERING, alerts.c.lease_until < now))
        with self.storage.write_transaction() as connection:
            for row in connection.execute(select(alerts).where(due)
                                          .order_by(alerts.c.next_attempt_at).limit(5)).mappings():
                taken = connection.execute(
                    update(alerts).where(alerts.c.id == row["id"], due)
                    .values(status=DELIVERING, lease_until=now + timedelta(seconds=self.lease)))
                if taken.rowcount == 1:  # nobody else claimed it between select and update
                    return dict(row)
        return None

    def delivered(self, row_id: int) -> None:
        self._set(row_id, status=DELIVERED, delivered_at=_now(), lease_until=None,
                  last_error=None)

    def failed(self, row: dict, error: str) -> str:
        attempts = row["attempts"] + 1
        if attempts >= self.max_attempts:
            self._set(row["id"], status=DEAD, attempts=attempts, last_error=error,
                      lease_until=None)
            return DEAD
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempts - 1))
        delay *= random.uniform(0.5, 1.5)  # jitter: retries from many rows do not align
        self._set(row["id"], status=PENDING, attempts=attempts, last_error=error,
                  lease_until=None, next_attempt_at=_now() + timedelta(seconds=delay))
        return PENDING

    def replay(self, alert_id: str) -> int:
        """Put every dead row of an alert back in the queue; returns how many."""
        with self.storage.engine.begin() as connection:
            return connection.execute(
                update(alerts).where(alerts.c.alert_id == alert_id, alerts.c.status == DEAD)
                .values(status=PENDING, attempts=0, next_attempt_at=_now(),
                        last_error=None)).rowcount

    def rows(self, status: str | None = None, limit: int = 100) -> list[dict]:
        query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
        if status:
            query = query.where(alerts.c.status == status)
        with self.storage.engine.connect() as connection:
            found = [dict(r) for r in connection.execute(query).mappings()]
        for row in found:
            for key in ("next_attempt_at", "lease_until", "created_at", "delivered_at"):
                row[key] = _aware(row[key])
        return found

    def _set(self, row_id: int, **values) -> None:
        with self.storage.engine.begin() as connection:
            connection.execute(update(alerts).where(alerts.c.id == row_id).values(**values))
