"""WSGI shim for bench/faults (scenario e): the real app, whose transformer fails at run time.

    PYTHONPATH=bench/faults FAULTS_MODE=raise .venv/bin/gunicorn -c gunicorn.conf.py faulty_wsgi:app

A model that loads fine and then breaks cannot be arranged from outside the process, so this
builds the app exactly as wsgi.py does and replaces, in each worker, the loaded predictor's
`predict` (what the circuit breaker watches) with one that
  FAULTS_MODE=raise  raises RuntimeError,
  FAULTS_MODE=slow   sleeps FAULTS_SLOW_SECONDS (default 0.6) and then predicts normally,
after the first FAULTS_AFTER_CALLS calls (default 0) of that worker, which work normally.
Every response carries X-Faults-Worker (the worker's pid) and X-Faults-Predict-Calls (how many
times that worker's transformer was called), so the scenario can check the breaker per worker.
Benchmark-only: never deploy it.
"""
from __future__ import annotations

import os
import threading
import time

from smart_support import create_app

app = create_app()

MODE = os.environ.get("FAULTS_MODE", "raise")
AFTER_CALLS = int(os.environ.get("FAULTS_AFTER_CALLS", "0"))
SLOW_SECONDS = float(os.environ.get("FAULTS_SLOW_SECONDS", "0.6"))
if MODE not in ("raise", "slow"):
    raise SystemExit(f"faulty_wsgi: FAULTS_MODE must be raise or slow, not {MODE!r}")

_service = app.extensions["smart_support"]
if _service.predictor is None:
    raise SystemExit("faulty_wsgi: the model did not load (see /ready's reason in the log); "
                     "the runtime fault needs a loaded model")
_real_predict = _service.predictor.predict
_calls = 0
_lock = threading.Lock()


def _faulty_predict(tickets):
    global _calls
    with _lock:
        _calls += 1
        call = _calls
    if call <= AFTER_CALLS:
        return _real_predict(tickets)
    if MODE == "raise":
        raise RuntimeError(f"injected fault (bench/faults, call {call})")
    time.sleep(SLOW_SECONDS)
    return _real_predict(tickets)


_service.predictor.predict = _faulty_predict


@app.after_request
def _tag(response):
    response.headers["X-Faults-Worker"] = str(os.getpid())
    response.headers["X-Faults-Predict-Calls"] = str(_calls)
    return response
