"""The prediction log behind `smart-support drift` and `POST /feedback`, written in batches.

A transaction per /classify answer cost 0.13 ms of a worker's CPU; twelve rows in one (what 50
ms of a busy worker's answers make) cost 0.02 ms a row (`bench/experiments.py prediction-log`),
and the desk's SQLite file sees ten times fewer write transactions. So answers wait in memory for at most `flush_seconds` and a
background thread writes whatever has gathered in one transaction.

What that costs, and how it is kept honest:
- A row may reach the database up to `flush_seconds` after its answer went out. A correction
  that names a just-classified ticket looks it up with `latest_ticket`, which writes this
  process's waiting rows first and, on a miss, keeps looking for `miss_wait_seconds`, so a
  row waiting in the *other* worker is found too. A correction naming a ticket_id that
  was never classified therefore gets its 404 after `miss_wait_seconds` (0.25 s by default).
- The log is statistics about answers, not accepted data: no client is told a row was stored.
  Rows that cannot be written (storage down) or do not fit (`max_pending`) are dropped,
  counted in `smart_support_prediction_log_dropped_total` and logged, never silently.
  `max_pending` bounds memory while storage stalls: 2,000 rows of the longest tickets are
  about 40 MB, and 2,000 rows are over 10 s of one worker's full load.
- A worker that exits normally (SIGTERM, max-requests, reload) writes its waiting rows first;
  a SIGKILLed worker loses at most one interval of rows.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import datetime, timezone

log = logging.getLogger(__name__)


class PredictionLog:
    def __init__(self, storage, flush_seconds: float = 0.05, max_pending: int = 2_000):
        self.storage = storage
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: list[dict] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()  # flushes run one at a time, so rows stay in order
        self._stop = threading.Event()
        self._has_rows = threading.Event()  # the writer sleeps until there is something to write
        self._thread: threading.Thread | None = None
        self._owner_pid: int | None = None

    @property
    def batched(self) -> bool:
        return self.flush_seconds > 0

    def append(self, rows: list[dict]) -> None:
        """Log answers: written now when unbatched, else within `flush_seconds`."""
        stamped = [{"created_at": datetime.now(timezone.utc), **row} for row in rows]
        if not self.batched:
            self._write(stamped)
            return
        with self._pending_lock:
            room = self.max_pending - len(self._pending)
            self._pending.extend(stamped[:max(0, room)])
        if room < len(stamped):
            self._dropped(len(stamped) - max(0, room), "the queue is full")
        self._ensure_writer()
        if not self._has_rows.is_set():  # set() takes the event's lock and wakes waiters:
            self._has_rows.set()         # 1.3% of a worker's Python time when done per answer

    def flush(self) -> None:
        """Write every waiting row of this process now."""
        with self._write_lock:
            with self._pending_lock:
                rows, self._pending = self._pending, []
            if rows:
                self._write(rows)

    def latest_ticket(self, ticket_id: str) -> dict | None:
        """The newest logged answer for `ticket_id` that kept its text, including answers that
        another worker has not written yet (it waits up to `miss_wait_seconds` for those)."""
        self.flush()
        found = self.storage.latest_ticket(ticket_id)
        deadline = time.monotonic() + self.miss_wait_seconds
        while found is None and time.monotonic() < deadline:
            time.sleep(self.flush_seconds)
            found = self.storage.latest_ticket(ticket_id)
        return found

    @property
    def miss_wait_seconds(self) -> float:
        """How long a lookup that misses keeps looking: several flush intervals, so a busy
        worker's late flush is still seen (0 when unbatched: nothing can be waiting)."""
        return max(0.2, 5 * self.flush_seconds) if self.batched else 0.0

    def close(self) -> None:
        """Stop the writer and write what is waiting (normal worker exit)."""
        self._stop.set()
        self._has_rows.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()

    def _write(self, rows: list[dict]) -> None:
        try:
            self.storage.record_predictions(rows)
        except Exception:  # noqa: BLE001 - any storage fault; answers already went out
            self._dropped(len(rows), "storage failed", exc_info=True)

    @staticmethod
    def _dropped(count: int, why: str, exc_info: bool = False) -> None:
        from smart_support.metrics import PREDICTION_LOG_DROPPED

        PREDICTION_LOG_DROPPED.inc(count)
        log.warning("prediction log: %d row(s) not written: %s", count, why, exc_info=exc_info)

    def _ensure_writer(self) -> None:
        # Started lazily in the process that serves, so no thread ever crosses a fork.
        if self._owner_pid == os.getpid():
            return
        with self._pending_lock:
            if self._owner_pid == os.getpid():
                return
            self._owner_pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="prediction-log",
                                            daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._has_rows.wait()  # idle workers do not wake up
            self._stop.wait(self.flush_seconds)  # let one interval's answers gather
            self._has_rows.clear()  # before taking the rows: a later append sets it again
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any one failure
                log.exception("prediction log writer failed")
