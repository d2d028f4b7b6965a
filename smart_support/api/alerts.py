"""Admin view of the alert outbox: list (e.g. dead letters) and replay."""
from __future__ import annotations

from flask import current_app
from flask_smorest import abort

from smart_support.api import Blueprint
from smart_support.api.schemas import AlertListQuerySchema, AlertListSchema, ReplaySchema

blp = Blueprint("alerts", __name__, description="Urgent-ticket alert outbox (admin).")


def outbox():
    found = current_app.extensions.get("smart_support_alerts")
    if found is None:
        abort(404, message="Alerts are off: set SMART_SUPPORT_WEBHOOK_URLS.")
    return found


@blp.route("/alerts", methods=["GET"])
@blp.arguments(AlertListQuerySchema, location="query")
@blp.response(200, AlertListSchema)
@blp.alt_response(404, description="Alerts are not configured.")
def list_alerts(query):
    """Alert deliveries, newest first, optionally by status (pending, delivered, dead...)."""
    return {"alerts": outbox().rows(query.get("status"), query["limit"])}


@blp.route("/alerts/<string:alert_id>/replay", methods=["POST"])
@blp.response(200, ReplaySchema)
@blp.alt_response(404, description="No dead delivery for this alert id.")
def replay_alert(alert_id):
    """Queue every dead delivery of an alert again, with fresh attempts."""
    count = outbox().replay(alert_id)
    if not count:
        abort(404, message="No dead delivery with this alert id.",
              errors={"alert_id": ["Unknown, or not dead."]})
    return {"alert_id": alert_id, "requeued": count}
