"""REFERENCE apps for `bench/experiments.py lean`, never shipped: the shipped app, model and all,
with POST /classify answered by a plainer view, to measure what the route's layers cost when
forward passes run between requests. Served by gunicorn as factories (`lean_apps:features_kept()`).

- features_kept: the same validation (TicketSchema), answer, metrics, prediction log and
  alerts as the shipped route (`smart_support.api.classify._run`), without flask-smorest's
  argument and response wrappers (no ?explain, no response-schema dump).
- no_features: JSON in, the model's answer out: no validation, metrics, logs or alerts
  (the app's hooks, such as auth and the per-request metrics, still run).
"""
from __future__ import annotations

import json

from flask import Response, request
from flask_smorest import abort
from marshmallow import ValidationError

from smart_support import create_app
from smart_support.api import classify
from smart_support.api.schemas import TicketSchema
from smart_support.inference.predictor import Ticket

ROUTE = "classify.classify"


def _json(answer: dict) -> Response:
    return Response(json.dumps(answer), mimetype="application/json")


def features_kept():
    app = create_app()
    schema = TicketSchema()

    def view():
        try:
            ticket = schema.load(request.get_json())
        except ValidationError as exc:
            abort(422, errors={"json": exc.messages})
        _, (answer,) = classify._run([ticket])
        answer["latency_seconds"] = classify._elapsed()
        return _json(answer)

    app.view_functions[ROUTE] = view
    return app


def no_features():
    app = create_app()
    service = app.extensions["smart_support"]

    def view():
        body = request.get_json()
        (result,), _ = service.triage([Ticket(body.get("subject") or "", body["description"])])
        return _json({"ticket_id": body.get("ticket_id"), "category": result.category,
                      "urgency_score": round(result.urgency_score, 4),
                      "confidence": round(result.confidence, 4),
                      "scores": {k: round(v, 4) for k, v in result.scores.items()},
                      "model_category": result.model_category, "override": result.override,
                      "model_version": service.model_version, "model": result.model,
                      "degraded": result.degraded, "needs_review": result.needs_review,
                      "alert": None})

    app.view_functions[ROUTE] = view
    return app
