"""The ticket desk: agents, incidents, tickets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("skills", sa.JSON, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("load", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("ticket_count", sa.Integer, nullable=False),
        sa.Column("centroid", sa.LargeBinary, nullable=False),
        sa.Column("alert_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_ticket_at", TZ, nullable=False),
        sa.Column("resolved_at", TZ),
        sa.Column("resolution", sa.Text),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ticket_id", sa.String(200), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("model_category", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("urgency", sa.Float, nullable=False),
        sa.Column("needs_review", sa.Boolean, nullable=False),
        sa.Column("override", sa.JSON),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(100)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id")),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id")),
        sa.Column("alert_id", sa.String(64)),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("requeues", sa.Integer, nullable=False),
        sa.Column("resolution", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("assigned_at", TZ),
        sa.Column("resolved_at", TZ),
    )
    op.create_index("ix_tickets_category", "tickets", ["category"])
    op.create_index("ix_tickets_agent_id", "tickets", ["agent_id"])
    op.create_index("ix_tickets_incident_id", "tickets", ["incident_id"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_index("ix_tickets_queue", "tickets", ["status", "urgency", "id"])


def downgrade() -> None:
    op.drop_table("tickets")
    op.drop_table("incidents")
    op.drop_table("agents")
