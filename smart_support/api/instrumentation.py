"""Per-request timing and counting for every route, including errors and 404s."""
from __future__ import annotations

import time

from flask import Flask, g, request

from smart_support.metrics import REQUEST_SECONDS, REQUESTS, labelled


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        labelled(REQUESTS, request.method, endpoint, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            labelled(REQUEST_SECONDS, endpoint).observe(time.perf_counter() - started)
        return response
