"""POST /feedback (an agent's correction) and GET /feedback (the latest corrections)."""
from __future__ import annotations

from flask import current_app
from flask_smorest import abort
from sqlalchemy.exc import SQLAlchemyError

from smart_support.api import Blueprint
from smart_support.api.classify import require_json
from smart_support.api.schemas import (
    FeedbackListQuerySchema, FeedbackListSchema, FeedbackRecordSchema, FeedbackSchema,
)

blp = Blueprint("feedback", __name__, description="Corrections that feed the next training run.")
blp.before_request(require_json)


def _storage():
    storage = current_app.extensions.get("smart_support_storage")
    if storage is None:
        abort(503, message="Feedback storage is not available; see the server log.")
    return storage


def _latest_ticket(storage, ticket_id: str) -> dict | None:
    """The ticket as last classified, including answers a worker has not written yet."""
    prediction_log = current_app.extensions.get("smart_support_prediction_log")
    return (prediction_log.latest_ticket(ticket_id) if prediction_log is not None
            else storage.latest_ticket(ticket_id))


@blp.route("/feedback", methods=["POST"])
@blp.arguments(FeedbackSchema)
@blp.response(201, FeedbackRecordSchema)
@blp.alt_response(404, description="ticket_id names no logged ticket, and no text was sent.")
@blp.alt_response(415, description="Content-Type is not application/json.")
@blp.alt_response(503, description="Storage unavailable: the correction was not recorded.")
def add_feedback(correction):
    """Record an agent's correction durably (201 only once it is stored)."""
    service = current_app.extensions["smart_support"]
    labels = service.artifacts.labels if service.artifacts else None
    if labels is not None and correction["category"] not in labels:
        abort(422, errors={"category": [f"Must be one of {labels}."]})
    storage = _storage()
    subject, description = correction.get("subject") or "", correction.get("description")
    predicted = {}
    try:
        if correction.get("ticket_id"):
            logged = _latest_ticket(storage, correction["ticket_id"])
            if logged:
                predicted = {"predicted_category": logged["category"],
                             "predicted_urgency": logged["urgency"],
                             "model_version": logged["model_version"]}
                if not description:
                    subject, description = logged["subject"] or "", logged["description"]
        if not description:
            abort(404, message="No logged ticket with this ticket_id kept its text; send "
                               "subject and description with the correction.",
                  errors={"ticket_id": ["Unknown ticket."]})
        return storage.add_feedback({
            "ticket_id": correction.get("ticket_id"), "subject": subject,
            "description": description, "category": correction["category"],
            "urgency": correction.get("urgency"), "agent": correction.get("agent"),
            "note": correction.get("note"),
            **{"model_version": service.model_version, **predicted}})
    except SQLAlchemyError:
        current_app.logger.exception("feedback not stored")
        abort(503, message="The correction could not be stored; nothing was recorded.")


@blp.route("/feedback", methods=["GET"])
@blp.arguments(FeedbackListQuerySchema, location="query")
@blp.response(200, FeedbackListSchema)
def list_feedback(query):
    """The latest corrections, newest first."""
    try:
        return {"feedback": _storage().feedback_rows(query["limit"])}
    except SQLAlchemyError:
        current_app.logger.exception("feedback not readable")
        abort(503, message="Feedback storage is not available.")
