"""Liveness, readiness and metrics."""
from __future__ import annotations

from flask import Response, current_app

from smart_support import metrics
from smart_support.api import Blueprint
from smart_support.api.schemas import HealthSchema, ReadySchema

blp = Blueprint("health", __name__, description="Liveness, readiness and metrics.")


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
def health():
    """Liveness: the process answers, whether or not the model is loaded."""
    return {"status": "ok"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="Not ready; reason names the file.")
def ready():
    """Readiness: 200 only when every artifact is loaded and consistent."""
    service = current_app.extensions["smart_support"]
    if service.ready:
        return {"ready": True, "model_version": service.model_version,
                "labels": service.artifacts.labels,
                "runtime": {"name": service.settings.runtime,
                            "quantize": service.settings.quantize,
                            "threads": service.settings.torch_threads},
                "answered_by": service.answered_by,
                "degraded": service.degraded,
                "breaker": service.breaker.snapshot(), "alerts": _alerts_state(),
                "desk": _desk_state()}
    return {"ready": False, "model_version": None, "reason": service.not_ready.reason,
            "file": service.not_ready.path}, 503


def _alerts_state() -> dict | None:
    outbox = current_app.extensions.get("smart_support_alerts")
    if outbox is None:
        return None
    try:
        waiting = outbox.pending_count()
    except Exception:  # noqa: BLE001 - report, do not fail readiness on a stats query
        return {"error": "outbox unreadable"}
    return {"waiting": waiting, "limit": outbox.max_pending, "full": waiting >= outbox.max_pending}


def _desk_state() -> dict:
    desk = current_app.extensions.get("smart_support_desk")
    if desk is None:
        return {"available": False, "reason": "database unavailable (see the server log)"}
    state = {"available": True, "storm_detection": desk.embedder is not None}
    if desk.window is not None:
        state["storm_window_tickets"] = len(desk.window)  # this worker's copy
    return state


@blp.route("/metrics", methods=["GET"])
@blp.doc(responses={200: {"description": "Prometheus text format.",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}})
def prometheus_metrics():
    """Prometheus metrics, aggregated over every worker."""
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
