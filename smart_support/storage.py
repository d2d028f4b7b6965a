"""Durable records through SQLAlchemy: the ticket desk, agents' feedback, the prediction log
behind drift and the alert outbox.

SQLite file under SMART_SUPPORT_DATA_DIR by default; any SQLAlchemy URL (PostgreSQL included)
with SMART_SUPPORT_DATABASE_URL. The schema is owned by the Alembic migrations in
smart_support/migrations: every process upgrades to the newest revision at start-up, under a
lock, so several workers or hosts starting at once apply each migration exactly once. The
prediction log keeps no ticket text unless the client sent a ticket_id (so that a correction
can later name the ticket by id).
"""
from __future__ import annotations

import contextlib
import fcntl
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    JSON, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
    String, Table, Text, create_engine, event, insert, select, text,
)

metadata = MetaData()

predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("ticket_id", String(200), index=True),
    Column("subject", Text),
    Column("description", Text),
    Column("category", String(100), nullable=False),
    Column("model_category", String(100), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("urgency", Float, nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("model", String(32), nullable=False),
    Column("model_version", String(100)),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("ticket_id", String(200), index=True),
    Column("subject", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("category", String(100), nullable=False),
    Column("urgency", Float),
    Column("predicted_category", String(100)),
    Column("predicted_urgency", Float),
    Column("agent", String(200)),
    Column("note", Text),
    Column("model_version", String(100)),
)


alerts = Table(
    "alerts", metadata,
    # one row per (alert, receiver); alert_id is what receivers de-duplicate on
    Column("id", Integer, primary_key=True),
    Column("alert_id", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending delivering delivered dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
)


agents = Table(
    "agents", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("skills", JSON, nullable=False),  # {category: level in [0, 1]}
    Column("capacity", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    # open tickets, kept in step with tickets.agent_id inside each desk transaction so that a
    # conditional UPDATE can enforce capacity atomically
    Column("load", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True),
    Column("status", String(16), nullable=False, index=True),  # open resolved
    Column("title", Text, nullable=False),
    Column("category", String(100), nullable=False),
    Column("ticket_count", Integer, nullable=False),
    Column("centroid", LargeBinary, nullable=False),  # float32, unit length
    Column("alert_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_ticket_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolution", Text),
)

tickets = Table(
    "tickets", metadata,
    # id orders tickets by arrival (the storm window syncs on it); ticket_id is the public id
    Column("id", Integer, primary_key=True),
    Column("ticket_id", String(200), nullable=False, unique=True),
    Column("fingerprint", String(64), nullable=False),  # sha256 of subject and description
    Column("subject", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("category", String(100), nullable=False, index=True),
    Column("model_category", String(100), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("urgency", Float, nullable=False),
    Column("needs_review", Boolean, nullable=False),
    Column("override", JSON),
    Column("model", String(32), nullable=False),
    Column("model_version", String(100)),
    Column("status", String(16), nullable=False),  # queued assigned resolved
    Column("agent_id", Integer, ForeignKey("agents.id"), index=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), index=True),
    Column("alert_id", String(64)),
    Column("embedding", LargeBinary),  # float32, unit length; None without storm detection
    Column("requeues", Integer, nullable=False, default=0),
    Column("resolution", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("assigned_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_tickets_queue", "status", "urgency", "id"),
)


def prediction_row(ticket_id: str | None, subject: str, description: str, result,
                   model_version: str | None) -> dict:
    """One prediction-log row for a TriageResult; the text is kept only with a ticket_id (so
    that a correction can later name the ticket by id)."""
    return {"ticket_id": ticket_id, "subject": (subject or "") if ticket_id else None,
            "description": description if ticket_id else None,
            "category": result.category, "model_category": result.model_category,
            "confidence": result.confidence, "urgency": result.urgency_score,
            "needs_review": result.needs_review, "model": result.model,
            "model_version": model_version}


def database_url(data_dir: Path, configured: str) -> str:
    if configured:
        return configured
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data_dir).resolve() / 'smart_support.db'}"


def _fix_sqlite_transactions(engine) -> None:
    """pysqlite starts transactions late (at the first write), so a read-then-write transaction
    can fail with "database is locked" instead of waiting. SQLAlchemy's documented recipe:
    take transaction control from the driver and emit BEGIN ourselves; desk transactions ask
    for BEGIN IMMEDIATE, which takes the write lock up front and waits for it."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer; NORMAL: a crash loses no committed transaction
        # in WAL mode. Foreign keys are off by default in SQLite.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin",
                                                                            "BEGIN"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(row) -> dict:
    """A row as a dict with created_at in UTC (SQLite hands back naive datetimes)."""
    record = dict(row)
    created = record.get("created_at")
    if created is not None and created.tzinfo is None:
        record["created_at"] = created.replace(tzinfo=timezone.utc)
    return record


# Desk transactions on PostgreSQL take this transaction-scoped advisory lock (a constant key):
# decisions that read then write (storm windows, assignment, idempotent submission) run one at
# a time across every worker and host, as they do on SQLite under BEGIN IMMEDIATE.
DESK_LOCK_KEY = zlib.crc32(b"smart-support desk")
MIGRATION_LOCK_KEY = zlib.crc32(b"smart-support migrations")


class Storage:
    def __init__(self, url: str, pool_size: int = 5):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options = {"connect_args": {"timeout": 30}} if self.is_sqlite else {
            "pool_pre_ping": True, "pool_size": pool_size, "max_overflow": pool_size}
        self.engine = create_engine(url, **options)
        if self.is_sqlite:
            _fix_sqlite_transactions(self.engine)

    @contextlib.contextmanager
    def desk_transaction(self):
        """One serialized read-then-write transaction of the desk; commits on success."""
        if self.is_sqlite:
            with self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE").begin() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DESK_LOCK_KEY})
                yield conn

    def write_transaction(self):
        """A transaction that reads then writes, without the desk's lock. On SQLite it takes
        the write lock up front (BEGIN IMMEDIATE): a deferred transaction whose read snapshot
        is overtaken by another connection's commit (the prediction-log writer's, say) fails
        at its first write with "database is locked" instead of waiting."""
        if self.is_sqlite:
            return self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE").begin()
        return self.engine.begin()

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision`, one process at a time."""
        from smart_support.migrations import upgrade

        with self._migration_lock() as connection:
            upgrade(connection, revision)

    @contextlib.contextmanager
    def _migration_lock(self):
        if self.is_sqlite:
            path = self.engine.url.database
            lock_path = f"{path}.migrate.lock" if path and path != ":memory:" else None
            with contextlib.ExitStack() as stack:
                if lock_path:
                    handle = stack.enter_context(open(lock_path, "w"))
                    fcntl.flock(handle, fcntl.LOCK_EX)
                connection = stack.enter_context(self.engine.connect())
                yield connection
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
                connection.commit()

    def record_predictions(self, rows: list[dict], connection=None) -> None:
        """Append prediction-log rows; inside the caller's transaction when given one."""
        stamped = [{"created_at": _now(), **row} for row in rows]
        if connection is not None:
            connection.execute(insert(predictions), stamped)
            return
        with self.engine.begin() as conn:
            conn.execute(insert(predictions), stamped)

    def latest_ticket(self, ticket_id: str) -> dict | None:
        """The newest logged prediction for `ticket_id` that kept its text."""
        query = (select(predictions).where(predictions.c.ticket_id == ticket_id,
                                           predictions.c.description.is_not(None))
                 .order_by(predictions.c.id.desc()).limit(1))
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _utc(row) if row else None

    def add_feedback(self, row: dict) -> dict:
        record = {"created_at": _now(), **row}
        with self.engine.begin() as connection:
            record["id"] = connection.execute(insert(feedback), record).inserted_primary_key[0]
        return record

    def feedback_rows(self, limit: int | None = None) -> list[dict]:
        query = select(feedback).order_by(feedback.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_utc(r) for r in connection.execute(query).mappings()]

    def prediction_rows(self, days: int) -> list[dict]:
        since = _now() - timedelta(days=days)
        query = (select(predictions.c.created_at, predictions.c.category,
                        predictions.c.confidence, predictions.c.needs_review, predictions.c.model)
                 .where(predictions.c.created_at >= since).order_by(predictions.c.id))
        with self.engine.connect() as connection:
            return [_utc(r) for r in connection.execute(query).mappings()]
