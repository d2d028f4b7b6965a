"""gunicorn settings for Smart-Support; every value can be overridden from the environment.

The app is NOT preloaded in the master: each worker loads the model after the fork, so no
thread pool (ONNX Runtime's, or torch's with SMART_SUPPORT_RUNTIME=torch, which can deadlock
after a fork) crosses one. workers x model threads is kept <= the number of cores.
"""
import json
import os
import shutil
import tempfile
import traceback

from gunicorn import glogging

cores = os.cpu_count() or 1
workers = int(os.environ.get("WORKERS", os.environ.get("SMART_SUPPORT_WORKERS", min(2, cores))))
# THREADS > 1: gthread workers whose request threads share one model through the micro-batcher
threads = int(os.environ.get("THREADS", os.environ.get("SMART_SUPPORT_THREADS", "1")))
os.environ.setdefault("SMART_SUPPORT_TORCH_THREADS", str(max(1, cores // max(1, workers))))

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread" if threads > 1 else "sync"
preload_app = False
timeout = int(os.environ.get("SMART_SUPPORT_WORKER_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
# nginx in front buffers slow clients; the limits below match deploy/nginx.conf.
limit_request_line = 8190
limit_request_fields = 100
# Empty turns it off: behind nginx, whose own access log already has every request.
accesslog = os.environ.get("SMART_SUPPORT_ACCESS_LOG", "-") or None


class JsonAccessLogger(glogging.Logger):
    """gunicorn's logger, with each access-log line one JSON object built by json.dumps.

    gunicorn's own access() builds and escapes an atom for every header and environ entry of
    every request, to fill access_log_format; that was 1.7% of a worker's profile under load
    (README, "Performance"). Its escaping covers only double quotes, so a backslash in a user
    agent made the line invalid JSON; json.dumps escapes everything. The fields are fixed, so
    access_log_format (--access-logformat) is not read."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        try:
            self.access_log.info(json.dumps({
                "remote": environ.get("REMOTE_ADDR", "-"),
                "request": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} "
                           f"{environ['SERVER_PROTOCOL']}",
                "status": int(status),
                "bytes": getattr(resp, "sent", None),
                "duration_ms": request_time.seconds * 1000 + request_time.microseconds // 1000,
                "agent": environ.get("HTTP_USER_AGENT", "-"),
            }))
        except Exception:  # as gunicorn's own access(): a log line never fails a request
            self.error(traceback.format_exc())


logger_class = JsonAccessLogger
errorlog = "-"
# gunicorn 27's control socket has one default path per user: two servers on one machine (a
# test run beside `make serve`) would take it from each other. Nothing here uses it.
control_socket_disable = True
loglevel = os.environ.get("SMART_SUPPORT_LOG_LEVEL", "info").lower()

# Prometheus multi-process mode: every worker writes samples here and /metrics sums them.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
    prefix="smart-support-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
