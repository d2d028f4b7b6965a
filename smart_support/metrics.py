"""Prometheus metrics (no Flask here), correct under several gunicorn workers.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before any worker imports prometheus_client;
each worker then writes its samples there and /metrics aggregates them. Without that variable
(tests, `flask run`) the process's own registry is served.
"""
from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("smart_support_http_requests_total", "HTTP requests by route and status.",
                   ["method", "endpoint", "status"])
REQUEST_SECONDS = Histogram("smart_support_http_request_seconds", "Wall time per HTTP request.",
                            ["endpoint"], buckets=LATENCY_BUCKETS)
STAGE_SECONDS = Histogram("smart_support_stage_seconds",
                          "Time per pipeline stage (per request, whole batch).", ["stage"],
                          buckets=LATENCY_BUCKETS)
MICRO_BATCH = Histogram("smart_support_micro_batch_requests",
                        "Requests served by one model call (micro-batching).",
                        buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32))
DESK_EVENTS = Counter("smart_support_desk_events_total",
                      "Ticket desk events: created, replayed, assigned, claimed, resolved, "
                      "requeued, incident_opened, incident_joined.", ["event"])
TICKETS = Counter("smart_support_tickets_classified_total", "Tickets classified by final category.",
                  ["category"])
OVERRIDES = Counter("smart_support_overrides_total", "Predictions changed by a routing rule.",
                    ["rule"])
ANSWERS = Counter("smart_support_answers_total", "Tickets answered, by the model that answered.",
                  ["model"])
ALERTS = Counter("smart_support_alerts_total",
                 "Urgent-ticket alerts by outcome: queued, not_recorded (outbox full or "
                 "unavailable), delivered, pending (a retry is scheduled), dead.", ["outcome"])
PREDICTION_LOG_DROPPED = Counter("smart_support_prediction_log_dropped_total",
                                 "Prediction-log rows not written (storage failed, or the "
                                 "in-memory queue was full); answers were not affected.")
BREAKER_TRANSITIONS = Counter("smart_support_breaker_transitions_total",
                              "Circuit-breaker state changes, by new state.", ["state"])
BREAKER_OPEN = Gauge("smart_support_breaker_open",
                     "1 while this worker's breaker is open or half-open.",
                     multiprocess_mode="liveall")


@functools.lru_cache(maxsize=1024)
def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once per label set for the per-request metrics:
    labels() takes a lock and checks its arguments on every call (README, "Performance")."""
    return metric.labels(*values)


def observe_triage(results, timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        labelled(STAGE_SECONDS, stage).observe(seconds)
    for result in results:
        labelled(TICKETS, result.category).inc()
        labelled(ANSWERS, result.model).inc()
        if result.override:
            labelled(OVERRIDES, result.override["rule"]).inc()


def render() -> tuple[bytes, str]:
    """The exposition text and its content type; summed over workers in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
