"""v1 tables: prediction log, feedback, alert outbox.

IF NOT EXISTS throughout: databases written by v1 (which created these tables itself, before
migrations) are adopted as they are.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("ticket_id", sa.String(200)),
        sa.Column("subject", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("model_category", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("urgency", sa.Float, nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(100)),
        if_not_exists=True,
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("ticket_id", sa.String(200)),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("urgency", sa.Float),
        sa.Column("predicted_category", sa.String(100)),
        sa.Column("predicted_urgency", sa.Float),
        sa.Column("agent", sa.String(200)),
        sa.Column("note", sa.Text),
        sa.Column("model_version", sa.String(100)),
        if_not_exists=True,
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_until", TZ),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ),
        if_not_exists=True,
    )
    for table, column in [("predictions", "created_at"), ("predictions", "ticket_id"),
                          ("feedback", "created_at"), ("feedback", "ticket_id"),
                          ("alerts", "alert_id"), ("alerts", "status"),
                          ("alerts", "next_attempt_at")]:
        op.create_index(f"ix_{table}_{column}", table, [column], if_not_exists=True)


def downgrade() -> None:
    for table in ("alerts", "feedback", "predictions"):
        op.drop_table(table)
