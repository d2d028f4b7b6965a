"""Durable records through SQLAlchemy: agents' feedback and the prediction log behind drift.

SQLite file under SMART_SUPPORT_DATA_DIR by default; any SQLAlchemy URL (PostgreSQL included)
with SMART_SUPPORT_DATABASE_URL. Tables are created if missing at start-up (CREATE ... IF NOT
EXISTS, safe when several workers start at once). The prediction log keeps no ticket text
unless the client sent a ticket_id (so that a correction can later name the ticket by id).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine,
    event, insert, select,
)
from sqlalchemy.schema import CreateIndex, CreateTable

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


def database_url(data_dir: Path, configured: str) -> str:
    if configured:
        return configured
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data_dir).resolve() / 'smart_support.db'}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(row) -> dict:
    """A row as a dict with created_at in UTC (SQLite hands back naive datetimes)."""
    record = dict(row)
    created = record.get("created_at")
    if created is not None and created.tzinfo is None:
        record["created_at"] = created.replace(tzinfo=timezone.utc)
    return record


class Storage:
    def __init__(self, url: str):
        self.url = url
        is_sqlite = url.startswith("sqlite")
        self.engine = create_engine(url, connect_args={"timeout": 30} if is_sqlite else {},
                                    pool_pre_ping=not is_sqlite)
        if is_sqlite:
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(connection, _record):
                # WAL: readers never block the writer; NORMAL: durable at each checkpoint,
                # and a crash loses no committed transaction in WAL mode.
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

    def create_schema(self) -> None:
        with self.engine.begin() as connection:
            for table in metadata.sorted_tables:
                connection.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    connection.execute(CreateIndex(index, if_not_exists=True))

    def record_predictions(self, rows: list[dict]) -> None:
        now = _now()
        with self.engine.begin() as connection:
            connection.execute(insert(predictions), [{"created_at": now, **row} for row in rows])

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
