"""POST /tickets latency as the storm window fills: the default model, the packaged similarity
encoder and a fresh SQLite database, in process (no HTTP), one ticket at a time.

    .venv/bin/python bench/desk_latency.py      # about 2 minutes; writes bench/results/desk.json

Every ticket of data/train.jsonl + data/test.jsonl is submitted with one timestamp (all inside
one 5-minute window), so the last ones are compared against 2,000 others. Reports the median
time of a submission, and of its storm step alone, per 500 tickets of window size. Every 250
submissions it also times the classification of one fixed probe ticket (median of 7): the
window does not touch that call, so a drift there is the machine's, not the desk's."""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from smart_support import create_app
    from smart_support.inference.predictor import Ticket

    rows = [json.loads(line) for name in ("train", "test")
            for line in (ROOT / f"data/{name}.jsonl").read_text().splitlines() if line.strip()]
    data_dir = tempfile.mkdtemp(prefix="desk-bench-")
    app = create_app({"model_dir": ROOT / "models", "data_dir": Path(data_dir),
                      "storm_enabled": True, "torch_threads": 2})
    desk = app.extensions["smart_support_desk"]
    frozen = desk.clock()
    desk.clock = lambda: frozen
    storm_times = []
    original = desk._storm_decision

    def timed(*args):
        started = time.perf_counter()
        try:
            return original(*args)
        finally:
            storm_times.append(time.perf_counter() - started)

    desk._storm_decision = timed
    probe = Ticket("Card declined", "I tried to pay the March invoice three times and the card "
                                    "is declined every time.")
    probes = {}
    totals = []
    for index, row in enumerate(rows):
        if index % 250 == 0:
            probes[index] = round(statistics.median(
                _seconds(desk.service.triage, [probe]) for _ in range(7)) * 1000, 2)
        started = time.perf_counter()
        desk.submit(None, row.get("subject") or "", row["description"])
        totals.append(time.perf_counter() - started)
    buckets = {}
    for start in range(0, len(rows), 500):
        part = slice(start, start + 500)
        buckets[f"{start}-{min(start + 500, len(rows))}"] = {
            "submit_ms_median": round(statistics.median(totals[part]) * 1000, 2),
            "storm_step_ms_median": round(statistics.median(storm_times[part]) * 1000, 3)}
    out = ROOT / "bench/results/desk.json"
    out.write_text(json.dumps({"tickets": len(rows), "by_window_size": buckets,
                               "probe_classification_ms_by_submissions": probes,
                               "database": "sqlite", "torch_threads": 2,
                               "what": "median ms of Desk.submit (classification, embedding, "
                                       "one SQLite transaction) and of its storm step"},
                              indent=2))
    for size, figures in buckets.items():
        print(f"window {size:>10}: submit {figures['submit_ms_median']} ms, "
              f"storm step {figures['storm_step_ms_median']} ms (medians)")
    print("probe classification, ms, after N submissions:", probes)


def _seconds(call, *args) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
