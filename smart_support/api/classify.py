"""POST /classify and /classify/batch."""
from __future__ import annotations

import time

from flask import current_app, g, request
from flask_smorest import abort
from sqlalchemy.exc import SQLAlchemyError

from smart_support.alerts.payload import ticket_alert
from smart_support.api import Blueprint
from smart_support.api.schemas import (
    BatchRequestSchema, BatchResponseSchema, ClassificationSchema, ExplainQuerySchema,
    TicketSchema,
)
from smart_support.inference.predictor import Ticket
from smart_support.inference.service import NotReady
from smart_support.metrics import ALERTS, observe_triage
from smart_support.storage import prediction_row

blp = Blueprint("classify", __name__, description="Classify support tickets.")


@blp.before_request
def require_json():
    if request.method in ("POST", "PUT", "PATCH") and request.content_length \
            and not request.is_json:
        abort(415, message="Content-Type must be application/json.")


def _run(payloads: list[dict], explain: bool = False):
    service = current_app.extensions["smart_support"]
    tickets = [Ticket(p.get("subject") or "", p["description"]) for p in payloads]
    try:
        results, timings = service.triage(tickets)
    except NotReady as exc:
        abort(503, message=f"The model is not ready: {exc.reason}")
    if explain:
        started = time.perf_counter()
        explanations = [service.explain(t, r) for t, r in zip(tickets, results)]
        timings["explain"] = time.perf_counter() - started
    observe_triage(results, timings)
    log_predictions(payloads, results, service.model_version)
    alert_refs = raise_alerts(payloads, tickets, results, service)
    answers = [
        {
            "ticket_id": payload.get("ticket_id"),
            "category": r.category,
            "urgency_score": round(r.urgency_score, 4),
            "confidence": round(r.confidence, 4),
            "scores": {label: round(p, 4) for label, p in r.scores.items()},
            "model_category": r.model_category,
            "override": r.override,
            "model_version": service.model_version,
            "model": r.model,
            "degraded": r.degraded,
            "needs_review": r.needs_review,
            "alert": alert_ref,
        }
        for payload, r, alert_ref in zip(payloads, results, alert_refs)
    ]
    if explain:
        for answer, explanation in zip(answers, explanations):
            answer["explanation"] = explanation
    return service.model_version, answers


def raise_alerts(payloads, tickets, results, service) -> list[dict | None]:
    """Record an alert for each ticket above the urgency threshold, durably, before the
    answer goes out; the answer says whether it was recorded (never a silent drop)."""
    outbox = current_app.extensions.get("smart_support_alerts")
    threshold = service.settings.alert_threshold
    refs = []
    for payload, ticket, result in zip(payloads, tickets, results):
        if outbox is None or result.urgency_score <= threshold:
            refs.append(None)
            continue
        try:
            refs.append(outbox.record(ticket_alert(payload.get("ticket_id"), ticket.subject,
                                                   ticket.description, result,
                                                   service.model_version)))
        except SQLAlchemyError:
            current_app.logger.error("alert not recorded: outbox storage unavailable")
            ALERTS.labels("not_recorded").inc()
            refs.append({"id": None, "status": "not_recorded",
                         "reason": "outbox storage unavailable"})
    return refs


def log_predictions(payloads, results, model_version) -> None:
    """The prediction log behind `smart-support drift`; text only when a ticket_id was sent.
    Statistics, not accepted data: written in batches, and a storage failure is counted and
    logged, never a failed request (smart_support.prediction_log)."""
    prediction_log = current_app.extensions.get("smart_support_prediction_log")
    if prediction_log is None:
        return
    prediction_log.append([prediction_row(p.get("ticket_id"), p.get("subject"), p["description"],
                                          r, model_version) for p, r in zip(payloads, results)])


def _elapsed() -> float:
    return round(time.perf_counter() - g.request_started, 6)


ERRORS = {401: "API keys are configured and none valid was sent.", 415: "Content-Type is not application/json.", 413: "Body over the size limit.",
          503: "The model is not loaded; the message says why."}


@blp.route("/classify", methods=["POST"])
@blp.arguments(ExplainQuerySchema, location="query", as_kwargs=True)
@blp.arguments(TicketSchema)
@blp.response(200, ClassificationSchema)
@blp.alt_response(401, description=ERRORS[401])
@blp.alt_response(415, description=ERRORS[415])
@blp.alt_response(413, description=ERRORS[413])
@blp.alt_response(503, description=ERRORS[503])
def classify(ticket, explain=False):
    """Classify one ticket: team, urgency, confidence and any rule that fired."""
    _, (result,) = _run([ticket], explain)
    result["latency_seconds"] = _elapsed()
    return sent_as_built(result)


@blp.route("/classify/batch", methods=["POST"])
@blp.arguments(BatchRequestSchema)
@blp.response(200, BatchResponseSchema)
@blp.alt_response(401, description=ERRORS[401])
@blp.alt_response(415, description=ERRORS[415])
@blp.alt_response(413, description=ERRORS[413])
@blp.alt_response(503, description=ERRORS[503])
def classify_batch(body):
    """Classify up to the batch limit of tickets in one pass, results in input order."""
    version, results = _run(body["tickets"])
    return sent_as_built({"results": results, "count": len(results), "model_version": version,
                          "degraded": any(r["degraded"] for r in results),
                          "latency_seconds": _elapsed()})


def sent_as_built(answer: dict):
    """The answer as JSON, without the response schema's dump: `_run` builds each answer of
    JSON values field by field as the schema documents it, so dumping would change nothing
    (tests/test_api.py checks this for every kind of answer), and the dump was 13% of the
    app's instructions per /classify request (README, "Performance"). The route's
    `response` decorator sends a Response as it is; its documentation is unchanged."""
    return current_app.json.response(answer)
