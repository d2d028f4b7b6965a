"""Prometheus metrics, correct under several gunicorn workers.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client;
each worker then writes its samples there and /metrics aggregates them. Without that variable
(tests, `flask run`) the process's own registry is served.
"""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("smart_support_http_requests_total", "HTTP requests by route and status.",
                   ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram("smart_support_http_request_seconds", "Wall time per HTTP request.",
                            ["endpoint"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("smart_support_stage_seconds",
                          "Time per pipeline stage (per request, whole batch).", ["stage"],
                          buckets=LATENCY_BUCKETS)
TICKETS = Counter("smart_support_tickets_classified_total", "Tickets classified by final category.",
                  ["category"])
OVERRIDES = Counter("smart_support_overrides_total", "Predictions changed by a routing rule.",
                    ["rule"])


def observe_triage(results, timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage).observe(seconds)
    for result in results:
        TICKETS.labels(result.category).inc()
        if result.override:
            OVERRIDES.labels(result.override["rule"]).inc()


def render() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        return response
