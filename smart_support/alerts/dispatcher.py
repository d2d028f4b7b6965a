"""Delivers outbox rows off the request path: one daemon thread per process, started after
the fork (create_app runs in each gunicorn worker). A slow or dead receiver costs this thread
time, never a request's."""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request

from smart_support.alerts.outbox import DEAD, Outbox

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Smart-Support-Signature"
ID_HEADER = "X-Smart-Support-Alert-Id"
TIMESTAMP_HEADER = "X-Smart-Support-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", as receivers should recompute it."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def post(url: str, body: bytes, alert_id: str, secret: str, timeout: float) -> None:
    """One delivery attempt; raises on anything but a 2xx answer."""
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", ID_HEADER: alert_id,
               TIMESTAMP_HEADER: timestamp, "User-Agent": "smart-support-alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, "not 2xx", response.headers, None)


class Dispatcher:
    def __init__(self, outbox: Outbox, secret: str, timeout: float, idle_sleep: float = 0.2,
                 on_result=None):
        self.outbox = outbox
        self.secret = secret
        self.timeout = timeout
        self.idle_sleep = idle_sleep
        self.on_result = on_result or (lambda result: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="alert-dispatcher",
                                            daemon=True)
            self._thread.start()

    def stop(self, wait: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(wait)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.deliver_one()
            except Exception:  # noqa: BLE001 - a database hiccup must not kill the thread
                log.exception("alert dispatcher error")
                worked = False
            if not worked:
                self._stop.wait(self.idle_sleep)

    def deliver_one(self) -> bool:
        """Claim and attempt one row; False when nothing was due."""
        row = self.outbox.claim()
        if row is None:
            return False
        try:
            post(row["url"], row["body"].encode(), row["alert_id"], self.secret, self.timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is retried or dead-lettered
            outcome = self.outbox.failed(row, f"{type(exc).__name__}: {exc}"[:500])
            (log.error if outcome == DEAD else log.warning)(
                "alert %s to %s failed (attempt %d): %s", row["alert_id"], row["url"],
                row["attempts"] + 1, exc)
            self.on_result(outcome)
        else:
            self.outbox.delivered(row["id"])
            self.on_result("delivered")
        return True

    def drain(self, deadline: float) -> None:
        """Deliver until nothing is due or `deadline` (monotonic) passes (CLI and tests)."""
        while time.monotonic() < deadline and self.deliver_one():
            pass
