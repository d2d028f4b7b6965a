"""Request micro-batching inside one worker: one model call at a time for all of the worker's
threads, and the requests that arrive while a call runs are served together by the next one.

Nothing waits for company: an idle worker runs a lone request at once, so the latency of a
single request is unchanged, and under load several requests share one forward pass (sorted,
padded batches are ~2x cheaper per ticket than one-by-one passes on this CPU). Created after
gunicorn forks (create_app runs in each worker), so no thread crosses a fork.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Sequence


class _Job:
    __slots__ = ("tickets", "done", "result", "error", "queued_at")

    def __init__(self, tickets):
        self.tickets = tickets
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None
        self.queued_at = time.perf_counter()


class MicroBatcher:
    def __init__(self, run: Callable, max_tickets: int,
                 on_batch: Callable[[int], None] | None = None):
        """`run(tickets)` -> (predictions in order, timings dict, model name); `on_batch(n)` is
        told how many requests each call served."""
        self._run = run
        self._on_batch = on_batch
        self.max_tickets = max_tickets
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, tickets: Sequence) -> tuple[list, dict[str, float], str]:
        job = _Job(list(tickets))
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _serve(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            count = len(jobs[0].tickets)
            while count < self.max_tickets:
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
                count += len(jobs[-1].tickets)
            self._run_together(jobs)

    def _run_together(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            predictions, timings, model = self._run([t for job in jobs for t in job.tickets])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for job in jobs:
                job.error = exc
                job.done.set()
            return
        if self._on_batch:
            self._on_batch(len(jobs))
        offset = 0
        for job in jobs:
            mine = predictions[offset:offset + len(job.tickets)]
            offset += len(job.tickets)
            job.result = (mine, {**timings, "queue": started - job.queued_at}, model)
            job.done.set()
