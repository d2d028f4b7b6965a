"""In-process model throughput and latency: the ceiling that the HTTP server cannot beat.

bench/run.py starts this script once per setting (runtime, quantize, threads), in a fresh
process, because
  * quantize='int8' rewrites a torch model's Linear layers in place, so fp32 and int8 each need
    artifacts loaded afresh,
  * torch's intra-op thread pool is sized once per process (torch.set_num_threads before use),
  * and the onnx runtime must show its memory without torch ever imported.

Two sub-commands:

  table     tickets/s of Predictor.predict by batch size for one (quantize, threads) setting,
            median of --repeats passes; optionally the latency of a 20,000-character e-mail
            against a typical ticket.
  parallel  one of N copies started together by run.py (1 thread each, like one gunicorn worker):
            loads, prints READY, waits for a line on stdin, then runs for --duration seconds, so
            that the copies overlap exactly and their sum is the limit of the server's layout.

The only output on stdout is one JSON line (after READY for `parallel`); progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from smart_support.config import Settings  # noqa: E402
from smart_support.inference.artifacts import load_artifacts, load_ensemble  # noqa: E402
from smart_support.inference.baseline import BaselinePredictor  # noqa: E402
from smart_support.inference.predictor import (  # noqa: E402
    Predictor, Ticket, blend_of, length_sorted_batches, ticket_text,
)

import sysinfo  # noqa: E402  (bench/ is on sys.path: this script's own directory)
from workload import long_email, percentile, read_tickets  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_predictor(args, batch_size: int) -> Predictor:
    """Artifacts loaded afresh (int8 mutates a torch model), threads fixed before the first op.
    With SMART_SUPPORT_ENSEMBLE on, as the server then runs it: blended with the baseline."""
    artifacts = load_artifacts(args.model_dir, args.runtime)
    blend = (blend_of(load_ensemble(artifacts.model_dir, artifacts.metadata),
                      BaselinePredictor(artifacts.baseline))
             if Settings.from_env().ensemble else None)
    predictor = Predictor(artifacts, args.max_tokens, batch_size, args.quantize, args.threads,
                          blend)
    predictor.warm_up()
    return predictor


def plan_batches(predictor: Predictor, tickets: list[Ticket], size: int, order: str,
                 rng: random.Random) -> list[list[int]]:
    """Which tickets go together in each predict() call.

    sorted:  what Predictor does inside one call with all tickets (a /classify/batch request
             holding the whole file): length-sorted groups of `size`, so padding stays small.
             The groups are then shuffled, so a pass cut short by the time cap still sees a
             fair mix of lengths instead of only the short ones.
    arrival: groups of `size` in file order, as separate /classify/batch requests of `size`
             tickets would arrive: each group is padded to its longest ticket.
    """
    if order == "arrival":
        return [list(range(i, min(i + size, len(tickets)))) for i in range(0, len(tickets), size)]
    sequences = predictor.budget.encode([ticket_text(t.subject, t.description) for t in tickets])
    batches = list(length_sorted_batches(sequences, size))
    rng.shuffle(batches)
    return batches


def wait_quiet(args) -> float:
    """Spend part of the run's budget (--quiet-budget) waiting for other processes to stop."""
    if args.quiet_budget <= 0:
        return 0.0
    waited = sysinfo.wait_until_quiet(min(args.quiet_budget, 30.0))
    args.quiet_budget -= waited
    args.waited_total += waited
    return waited


def timed_pass(predictor: Predictor, tickets: list[Ticket], batches: list[list[int]],
               max_seconds: float) -> dict:
    """One pass over `batches` (stopping early after max_seconds), one predict() per batch.

    Each call includes tokenisation and postprocessing, as in the service."""
    done, call_ms = 0, []
    cpu0 = time.process_time()
    started = time.perf_counter()
    deadline = started + max_seconds
    for rows in batches:
        t0 = time.perf_counter()
        predictor.predict([tickets[i] for i in rows])
        call_ms.append((time.perf_counter() - t0) * 1000)
        done += len(rows)
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return {"tickets": done, "seconds": elapsed, "tickets_per_s": done / elapsed,
            "cpu_cores": (time.process_time() - cpu0) / elapsed, "call_ms": call_ms}


def measure_table(args, predictor: Predictor, tickets: list[Ticket]) -> list[dict]:
    rows = []
    for order in args.orders:
        for size in args.batch_sizes:
            predictor.batch_size = size
            rng = random.Random(1000 + size)
            waited = wait_quiet(args)
            # one untimed call at this shape, so lazy kernel set-up is not billed to repeat 1
            predictor.predict([tickets[i] for i in plan_batches(predictor, tickets, size,
                                                                order, rng)[0]])
            repeats = []
            with sysinfo.CpuMeter(pids=lambda: [os.getpid()]) as meter:
                for _ in range(args.repeats):
                    batches = plan_batches(predictor, tickets, size, order, rng)
                    repeats.append(timed_pass(predictor, tickets, batches, args.max_seconds))
            calls = [ms for r in repeats for ms in r["call_ms"]]
            row = {
                "order": order,
                "batch_size": size,
                "tickets_per_s": statistics.median(r["tickets_per_s"] for r in repeats),
                "repeats_tickets_per_s": [round(r["tickets_per_s"], 2) for r in repeats],
                "tickets_per_repeat": [r["tickets"] for r in repeats],
                "full_pass": all(r["tickets"] == len(tickets) for r in repeats),
                "cpu_cores": statistics.median(r["cpu_cores"] for r in repeats),
                "call_ms_p50": statistics.median(calls),
                "call_ms_p95": percentile(calls, 95),
                "call_ms_p99": percentile(calls, 99),
                "foreign_cores": meter.result["foreign_cores"],
                "steal_cores": meter.result["steal_cores"],
                "waited_for_quiet_s": round(waited, 1),
            }
            rows.append(row)
            log(f"  {args.runtime} {args.quantize:>4} {args.threads} thr {order:>7} batch {size:>2}: "
                f"{row['tickets_per_s']:7.1f} tickets/s  (repeats {row['repeats_tickets_per_s']},"
                f" foreign load {row['foreign_cores']:.2f} cores)")
    return rows


def measure_long_input(args, predictor: Predictor, raw: list[dict],
                       tickets: list[Ticket]) -> dict:
    """Single-ticket latency (batch of one, as POST /classify does) of the long e-mail against
    the ticket of median token length in the test file, interleaved so drift hits both alike."""
    lengths = [len(ids) for ids in predictor.budget.tokens(
        [ticket_text(t.subject, t.description) for t in tickets])]
    typical_index = sorted(range(len(tickets)), key=lambda i: lengths[i])[len(tickets) // 2]
    subject, body = long_email(raw)
    cases = {"typical": tickets[typical_index], "long_email": Ticket(subject, body)}
    samples = {name: {"total": [], "preprocess": [], "forward": []} for name in cases}
    for name, ticket in cases.items():  # untimed first call per shape
        predictor.predict([ticket])
    for _ in range(args.long_repeats):
        for name, ticket in cases.items():
            t0 = time.perf_counter()
            _, timings = predictor.predict([ticket])
            samples[name]["total"].append((time.perf_counter() - t0) * 1000)
            samples[name]["preprocess"].append(timings["preprocess"] * 1000)
            samples[name]["forward"].append(timings["forward"] * 1000)
    result = {}
    for name, ticket in cases.items():
        text = ticket_text(ticket.subject, ticket.description)
        raw_tokens = len(predictor.budget.tokens([text])[0])
        result[name] = {
            "chars": len(ticket.description),
            "tokens_before_budget": raw_tokens,
            "tokens_read": len(predictor.budget.encode([text])[0]),
            "ms_p50": statistics.median(samples[name]["total"]),
            "ms_p95": percentile(samples[name]["total"], 95),
            "preprocess_ms_p50": statistics.median(samples[name]["preprocess"]),
            "forward_ms_p50": statistics.median(samples[name]["forward"]),
        }
    result["typical"]["index"] = typical_index
    result["ratio_p50"] = result["long_email"]["ms_p50"] / result["typical"]["ms_p50"]
    result["repeats"] = args.long_repeats
    log(f"  long e-mail {result['long_email']['ms_p50']:.1f} ms vs typical "
        f"{result['typical']['ms_p50']:.1f} ms (x{result['ratio_p50']:.2f})")
    return result


def token_stats(predictor: Predictor, tickets: list[Ticket]) -> dict:
    lengths = sorted(len(s) for s in predictor.budget.encode(
        [ticket_text(t.subject, t.description) for t in tickets]))
    return {"tickets": len(lengths), "median": statistics.median(lengths),
            "p95": percentile(lengths, 95), "max": lengths[-1],
            "at_budget": sum(1 for n in lengths if n >= predictor.budget.max_tokens)}


def cmd_table(args) -> dict:
    raw = read_tickets(args.data)
    tickets = [Ticket(t.get("subject") or "", t["description"]) for t in raw]
    log(f"in-process: {args.runtime} {args.quantize}, {args.threads} thread(s), "
        f"{len(tickets)} tickets")
    started = time.perf_counter()
    predictor = load_predictor(args, 1)
    load_s = time.perf_counter() - started
    out = {"runtime": args.runtime, "quantize": args.quantize, "threads": args.threads,
           "torch_imported": "torch" in sys.modules, "load_s": load_s,
           "max_rss_mib": sysinfo.own_max_rss_mib(), "max_tokens": args.max_tokens,
           "tokens": token_stats(predictor, tickets), "repeats": args.repeats,
           "max_seconds_per_repeat": args.max_seconds,
           "rows": measure_table(args, predictor, tickets)}
    if args.long_input:
        predictor.batch_size = 1
        wait_quiet(args)
        out["long_input"] = measure_long_input(args, predictor, raw, tickets)
    out["waited_for_quiet_s"] = args.waited_total
    return out


def cmd_parallel(args) -> dict:
    raw = read_tickets(args.data)
    tickets = [Ticket(t.get("subject") or "", t["description"]) for t in raw]
    predictor = load_predictor(args, args.batch_size)
    rng = random.Random(args.seed)
    batches = plan_batches(predictor, tickets, args.batch_size, "sorted", rng)
    predictor.predict([tickets[i] for i in batches[0]])
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit("parallel: expected GO on stdin")
    done, cpu0 = 0, time.process_time()
    busy0 = sysinfo.system_cpu_seconds()[0]
    started = time.perf_counter()
    deadline = started + args.duration
    while time.perf_counter() < deadline:
        for rows in batches:
            predictor.predict([tickets[i] for i in rows])
            done += len(rows)
            if time.perf_counter() >= deadline:
                break
        rng.shuffle(batches)
    elapsed = time.perf_counter() - started
    # the machine's busy CPU over exactly this window: run.py subtracts every copy's own CPU
    busy = sysinfo.system_cpu_seconds()[0] - busy0
    return {"runtime": args.runtime, "quantize": args.quantize, "threads": args.threads,
            "batch_size": args.batch_size,
            "tickets": done, "seconds": elapsed, "tickets_per_s": done / elapsed,
            "cpu_cores": (time.process_time() - cpu0) / elapsed,
            "system_busy_cores": busy / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("table", "parallel"))
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "test.jsonl")
    parser.add_argument("--model-dir", default=str(ROOT / "models"))
    parser.add_argument("--runtime", choices=("onnx", "torch"), default=Settings().runtime)
    parser.add_argument("--quantize", choices=("none", "int8"), default="int8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=Settings.from_env().max_tokens,
                        help="token budget per ticket (default: the service's, "
                             "SMART_SUPPORT_MAX_TOKENS included, as the server reads it)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 8, 16, 32, 64])
    parser.add_argument("--orders", type=lambda s: s.split(","), default=["sorted"],
                        help="sorted and/or arrival (see plan_batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=6.0,
                        help="cap on one repeat; a capped pass still sees a fair length mix")
    parser.add_argument("--long-input", action="store_true")
    parser.add_argument("--long-repeats", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=1, help="parallel: batch size")
    parser.add_argument("--duration", type=float, default=8.0, help="parallel: seconds")
    parser.add_argument("--seed", type=int, default=0, help="parallel: batch order seed")
    parser.add_argument("--quiet-budget", type=float, default=0.0,
                        help="table: seconds, in all, to wait for other processes to go quiet")
    args = parser.parse_args()
    args.waited_total = 0.0
    result = cmd_table(args) if args.command == "table" else cmd_parallel(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
