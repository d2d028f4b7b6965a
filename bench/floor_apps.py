"""REFERENCE apps for `bench/experiments.py floor`, never shipped: the least CPU per request that
gunicorn's sync worker, and Flask on it, cost on this machine, served with the same
gunicorn.conf.py as Smart-Support, so the server's own overhead can be set against a floor.

Both read the whole request body and answer every path (/ready included) with a JSON body of
the size /classify returns. Neither validates, classifies, logs or counts anything.
"""
from __future__ import annotations

import json

from flask import Flask, request

ANSWER = {"ticket_id": None, "category": "Billing", "urgency_score": 0.5, "confidence": 0.9,
          "scores": {"Billing": 0.9, "Legal": 0.03, "Technical": 0.04, "Other": 0.03},
          "model_category": "Billing", "override": None, "model_version": "floor",
          "model": "none", "degraded": False, "needs_review": False, "alert": None,
          "latency_seconds": 0.0}
BODY = json.dumps(ANSWER).encode()


def bare(environ, start_response):
    """Plain WSGI: read the body, answer a constant."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


flask_minimal = Flask(__name__)


@flask_minimal.route("/ready")
def ready():
    return {"ready": True}


@flask_minimal.post("/classify")
def classify():
    ticket = request.get_json()
    return {**ANSWER, "ticket_id": ticket.get("ticket_id")}
