"""Smart-Support benchmark: model limit in-process, the real server under wrk, a seed-shaped
reference server, memory, and the served model's accuracy against v1, in one run. `make bench`
runs it; see bench/README.md.

    .venv/bin/python bench/run.py            # full run, about 10 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # about 3 minutes, fewer repeats, shorter loads

Writes bench/results/{results.json, report.md, plot.png} and prints the key ratios.

Why the pieces are separate processes:
  * every in-process setting runs in a fresh process (int8 quantisation mutates a torch model
    in place; torch's thread pool is sized once per process; ONNX Runtime must run without
    torch imported);
  * the servers are started exactly as deployed (`gunicorn -c gunicorn.conf.py wsgi:app`), each
    in its own process group, so one killpg stops master and workers whatever happens;
  * wrk (a C load generator) rather than a Python client, so the client is not the bottleneck
    at 64 connections. It still shares the 2 cores with the server: its CPU use is reported.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import sysinfo
import workload
from procs import CHILDREN, Children, child_env, free_port, log, tail
from report import closed_loop

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The virtual environment this script runs in (`make bench VENV=...` picks it): its children,
# the server and the in-process copies alike, run the same interpreter.
VENV_BIN = Path(sys.executable).parent
PYTHON = VENV_BIN / "python"
GUNICORN = VENV_BIN / "gunicorn"
CONNECTIONS = (1, 4, 16, 64)
REFERENCE_CONNECTIONS = (1, 16)
BATCH_SIZES = (1, 8, 16, 32, 64)
# (runtime, quantize, threads). The served mode is the service's default: onnx, int8, and
# 1 thread per worker; torch shows what the onnx runtime gained.
SERVED = ("onnx", "int8")
INPROCESS_SETTINGS = (("torch", "none", 1), ("torch", "int8", 1), ("onnx", "none", 1),
                      ("onnx", "int8", 1), ("onnx", "int8", 2))
SERVER_WORKERS = 2
NOISY_FOREIGN_CORES = 0.2  # others using more than this during a measurement: flag it

# Full and quick runs differ only in these numbers.
PROFILES = {
    "full": {"duration": 15, "warmup": 4, "repeats": 3, "max_seconds": 5.0, "wait_quiet": 90,
             "parallel_duration": 8.0, "long_repeats": 30, "http_long_repeats": 20,
             "arrival_order": True, "ratio_rounds": 4},
    "quick": {"duration": 5, "warmup": 2, "repeats": 1, "max_seconds": 2.5, "wait_quiet": 30,
              "parallel_duration": 3.0, "long_repeats": 10, "http_long_repeats": 8,
              "arrival_order": False, "ratio_rounds": 1},
}


class BenchError(Exception):
    """A phase could not run; the message says why (with a log tail where there is one)."""


class QuietBudget:
    """Seconds the whole run may spend waiting for other processes to go quiet before a
    measurement (--wait-quiet). Bounded in total so `make bench` keeps its duration."""

    def __init__(self, seconds: float = 0.0):
        self.remaining, self.waited = seconds, 0.0

    def spend(self, seconds: float) -> None:
        self.remaining = max(0.0, self.remaining - seconds)
        self.waited += seconds

    def wait(self) -> float:
        if self.remaining <= 0:
            return 0.0
        waited = sysinfo.wait_until_quiet(min(self.remaining, 30.0))
        self.spend(waited)
        return waited


QUIET = QuietBudget()


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------
# (a) in-process

def run_inprocess_table(args, profile, runtime: str, quantize: str, threads: int) -> dict:
    argv = [PYTHON, BENCH / "inprocess.py", "table", "--runtime", runtime, "--quantize", quantize,
            "--threads", threads, "--data", args.data, "--model-dir", args.model_dir,
            "--batch-sizes", ",".join(map(str, BATCH_SIZES)),
            "--repeats", profile["repeats"], "--max-seconds", profile["max_seconds"]]
    argv += ["--quiet-budget", QUIET.remaining]
    if threads == 1:  # the server's layout: long inputs and batch order matter most here
        argv += ["--long-input", "--long-repeats", profile["long_repeats"]]
        if profile["arrival_order"] and (runtime, quantize) == SERVED:
            argv += ["--orders", "sorted,arrival"]
    proc = CHILDREN.start(argv, stdout=subprocess.PIPE, text=True, env=child_env(),
                          cwd=ROOT)
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        Children.stop(proc, grace=2)
        raise BenchError(f"in-process run {runtime} {quantize}/{threads} thread(s) took over "
                         "15 min") \
            from None
    if proc.returncode != 0:
        raise BenchError(f"in-process run {runtime} {quantize}/{threads} thread(s) failed "
                         f"(exit {proc.returncode}); its errors are above")
    result = json.loads(out.strip().splitlines()[-1])
    QUIET.spend(result.get("waited_for_quiet_s", 0.0))
    return result


def run_parallel(args, profile, batch_size: int, copies: int = SERVER_WORKERS,
                 python: Path = PYTHON) -> dict:
    """`copies` 1-thread processes of the served mode running at once, as gunicorn's workers do.

    Each loads on its own, says READY, and all get GO together, so their timed windows
    overlap; the sum of their rates is the model limit of the server's layout."""
    procs = []
    for k in range(copies):
        procs.append(CHILDREN.start(
            [python, BENCH / "inprocess.py", "parallel", "--runtime", SERVED[0],
             "--quantize", SERVED[1], "--threads", 1,
             "--batch-size", batch_size, "--duration", profile["parallel_duration"],
             "--seed", k, "--data", args.data, "--model-dir", args.model_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT))
    for proc in procs:
        line = proc.stdout.readline().strip()
        if line != "READY":
            raise BenchError(f"parallel in-process copy did not start (said {line!r})")
    waited = QUIET.wait()
    for proc in procs:
        proc.stdin.write("GO\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=profile["parallel_duration"] + 120)
        if proc.returncode != 0:
            raise BenchError(f"parallel in-process copy failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    # The copies time the same window (GO reaches them within milliseconds); each reports its
    # own CPU and the whole machine's, so others = machine - all copies, over that window.
    ours = sum(r["cpu_cores"] for r in results)
    machine = statistics.mean(r["system_busy_cores"] for r in results)
    return {"batch_size": batch_size, "copies": copies,
            "tickets_per_s": sum(r["tickets_per_s"] for r in results),
            "per_copy_tickets_per_s": [round(r["tickets_per_s"], 2) for r in results],
            "cpu_cores": round(ours, 3), "foreign_cores": round(max(0.0, machine - ours), 3),
            "waited_for_quiet_s": round(waited, 1)}


def served_table(table: dict) -> bool:
    """The in-process table of the mode the server runs, one thread (its workers' layout)."""
    return (table.get("runtime", "torch"), table["quantize"]) == SERVED and table["threads"] == 1


def phase_inprocess(args, profile, results) -> None:
    log("\n== (a) in-process model limit (data: %s) ==" % args.data)
    tables = []
    for runtime, quantize, threads in INPROCESS_SETTINGS:
        tables.append(run_inprocess_table(args, profile, runtime, quantize, threads))
        results["inprocess"]["tables"] = tables
    served = next(t for t in tables if served_table(t))
    sorted_rows = [r for r in served["rows"] if r["order"] == "sorted"]
    best = max(sorted_rows, key=lambda r: r["tickets_per_s"])["batch_size"]
    log(f"\n-- in-process, server layout: {SERVER_WORKERS} {' '.join(SERVED)} processes x 1 "
        "thread, "
        f"in parallel (batch 1 = what POST /classify runs; batch {best} = best single-process)")
    parallel = []
    for size in sorted({1, best}):
        row = run_parallel(args, profile, size)
        parallel.append(row)
        log(f"  batch {size:>2}: {row['tickets_per_s']:7.1f} tickets/s in total "
            f"(per copy {row['per_copy_tickets_per_s']}, foreign load "
            f"{row['foreign_cores']:.2f} cores)")
    results["inprocess"]["parallel"] = parallel


# --------------------------------------------------------------------------------------------
# (b, c, d) servers under wrk

class Server:
    """A gunicorn server in its own process group: started, awaited on /ready, always stopped."""

    def __init__(self, name: str, argv: list, cwd: Path, env: dict, log_path: Path,
                 ready_timeout: float = 120.0):
        self.name, self.argv, self.cwd, self.env = name, argv, cwd, env
        self.log_path, self.ready_timeout = log_path, ready_timeout
        self.port = int(env["PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self._log = open(self.log_path, "w")
        self.proc = CHILDREN.start(self.argv, cwd=self.cwd, env=self.env, stdout=self._log,
                                   stderr=subprocess.STDOUT)
        started = time.monotonic()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.ready_s = time.monotonic() - started
        log(f"  {self.name}: ready in {self.ready_s:.1f} s on {self.base} "
            f"(master {self.proc.pid}, workers {self.workers()})")
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited during start-up (exit "
                                 f"{self.proc.returncode}). Last lines of {self.log_path}:\n"
                                 f"{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.base + "/ready", timeout=5) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                # A worker answers only after its model load finished, so a 503 is final.
                reason = exc.read().decode(errors="replace")[:500]
                raise BenchError(f"{self.name} started but is not ready: /ready answered "
                                 f"{exc.code} {reason}\nLast lines of {self.log_path}:\n"
                                 f"{tail(self.log_path)}") from None
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} not ready after {self.ready_timeout:.0f} s. "
                                 f"Last lines of {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.25)

    def __exit__(self, *exc):
        if self.proc is not None:
            Children.stop(self.proc)
        self._log.close()
        return False

    def workers(self) -> list[int]:
        return sysinfo.children_of(self.proc.pid)

    def pids(self) -> list[int]:
        return [self.proc.pid] + self.workers()


class MemorySampler(threading.Thread):
    """VmRSS of master and workers every 0.5 s while loaded, to catch the peak total.

    The per-process peak is also kept by the kernel (VmHWM); the *total* peak is not, because
    workers peak at different moments, hence the sampling."""

    def __init__(self, server: Server, interval: float = 0.5):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.peak_total_kib = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            total = sum(sysinfo.memory_kib(p).get("VmRSS", 0) for p in self.server.pids())
            self.peak_total_kib = max(self.peak_total_kib, total)


def memory_report(server: Server, sampler: MemorySampler) -> dict:
    def one(pid, role):
        m = sysinfo.memory_kib(pid)
        return {"pid": pid, "role": role, "rss_mib": m.get("VmRSS", 0) / 1024,
                "peak_rss_mib": m.get("VmHWM", 0) / 1024, "pss_mib": m.get("Pss", 0) / 1024}
    processes = [one(server.proc.pid, "master")] + [one(p, "worker") for p in server.workers()]
    workers = [p for p in processes if p["role"] == "worker"]
    return {
        "processes": processes,
        "worker_peak_rss_mib_max": max((p["peak_rss_mib"] for p in workers), default=0),
        "total_peak_rss_mib": sum(p["peak_rss_mib"] for p in processes),
        "total_rss_mib": sum(p["rss_mib"] for p in processes),
        "total_pss_mib": sum(p["pss_mib"] for p in processes),
        "sampled_peak_total_rss_mib": sampler.peak_total_kib / 1024,
    }


def reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(server: Server, connections: int, duration: float, bodies: Path,
            log_path: Path, launcher: tuple = ()) -> dict:
    """One wrk run; returns its WRK_JSON line plus the CPU that server, wrk and others used.
    `launcher`: a command that execs wrk (`chrt --batch 0`: experiments.py preemption)."""
    threads = min(connections, 2)
    argv = [*launcher, "wrk", "-t", threads, "-c", connections, "-d", f"{duration}s",
            "--latency", "--timeout", "10s", "-s", BENCH / "wrk_post.lua",
            server.base + "/classify", "--", bodies]
    waited = QUIET.wait()  # the server is idle between levels: what is busy is someone else
    workers_before = server.workers()
    switches_before = [sysinfo.context_switches(pid) for pid in workers_before]
    reaped0 = reaped_children_cpu()
    server_cpu = sysinfo.CpuMeter(pids=server.pids)
    with server_cpu:
        # wrk's own CPU is only known once it is reaped: the rusage of reaped children
        everyone = sysinfo.CpuMeter(pids=server.pids, extra=lambda: reaped_children_cpu() - reaped0)
        with everyone:
            proc = CHILDREN.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            try:
                out, _ = proc.communicate(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                Children.stop(proc, grace=2)
                raise BenchError(f"wrk at {connections} connections did not finish") from None
            except BaseException:
                Children.stop(proc, grace=2)  # stop the load first, so the server stops fast
                raise
    switches_after = [sysinfo.context_switches(pid) for pid in workers_before]
    log_path.write_text(" ".join(map(str, argv)) + "\n\n" + out)
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{out[-2000:]}")
    stats = json.loads(line[len("WRK_JSON "):])
    seconds = stats["duration_us"] / 1e6
    wrk_cores = everyone.result["our_cores"] - server_cpu.result["our_cores"]
    lat = stats["latency_us"]
    errors = stats["errors"]
    row = {
        "connections": connections, "wrk_threads": threads, "duration_s": seconds,
        "requests": stats["requests"], "rps": stats["requests"] / seconds,
        "ok_rps": (stats["requests"] - stats["non2xx"]) / seconds,
        "p50_ms": lat["p50"] / 1000, "p95_ms": lat["p95"] / 1000, "p99_ms": lat["p99"] / 1000,
        "mean_ms": lat["mean"] / 1000, "max_ms": lat["max"] / 1000,
        "non2xx": stats["non2xx"], "status4xx": stats["status4xx"],
        "status5xx": stats["status5xx"], "degraded": stats["degraded"],
        "socket_errors": {k: errors[k] for k in ("connect", "read", "write", "timeout")},
        "socket_errors_total": sum(errors[k] for k in ("connect", "read", "write", "timeout")),
        "server_cores": server_cpu.result["our_cores"],
        "server_cpu_ms_per_request": (server_cpu.result["our_cores"] * seconds * 1000
                                      / max(1, stats["requests"])),
        "wrk_cores": round(max(0.0, wrk_cores), 3),
        "foreign_cores": everyone.result["foreign_cores"],
        "steal_cores": everyone.result["steal_cores"],
        "workers_restarted": server.workers() != workers_before,
        # how often the workers' request threads were preempted (involuntary) or waited
        # (voluntary) per request: wrk runs on the same cores, and its wake-ups preempt them
        # (what that costs: experiments.py preemption)
        "worker_switches_per_request": {
            kind: round(sum(after[i] - before[i] for before, after
                            in zip(switches_before, switches_after)) / max(1, stats["requests"]), 2)
            for i, kind in ((1, "involuntary"), (0, "voluntary"))},
        "waited_for_quiet_s": round(waited, 1),
    }
    log(f"  {connections:>2} conn: {row['rps']:7.1f} req/s  p50 {row['p50_ms']:7.1f} ms  "
        f"p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f}  non-2xx {row['non2xx']}  "
        f"socket errors {row['socket_errors_total']}  degraded {row['degraded']}")
    log(f"          CPU cores used: server {row['server_cores']:.2f}, wrk {row['wrk_cores']:.2f}, "
        f"others {row['foreign_cores']:.2f}; server CPU {row['server_cpu_ms_per_request']:.1f} "
        f"ms per request; workers preempted "
        f"{row['worker_switches_per_request']['involuntary']:.2f} times per request")
    return row


def warm_up(server: Server, bodies: Path, seconds: float, log_dir: Path) -> None:
    """Both workers answer real tickets for a few seconds before anything is timed."""
    subprocess.run(["wrk", "-t", "2", "-c", "2", "-d", f"{seconds}s", "-s",
                    str(BENCH / "wrk_post.lua"), server.base + "/classify", "--", str(bodies)],
                   stdout=open(log_dir / f"wrk-{server.name}-warmup.txt", "w"),
                   stderr=subprocess.STDOUT, check=False, timeout=seconds + 60)


def http_long_input(server: Server, typical: dict, long_subject: str, long_body: str,
                    repeats: int) -> dict:
    """Sequential single requests (one connection each, like bench/latency.py): a typical ticket
    against the 20,000-character e-mail, interleaved, client-side wall time."""
    bodies = {"typical": workload.request_body(typical),
              "long_email": json.dumps({"subject": long_subject, "description": long_body})}
    samples = {name: [] for name in bodies}
    for i in range(repeats + 2):
        for name, body in bodies.items():
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("POST", "/classify", body.encode(), {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != 200:
                raise BenchError(f"{name} request answered HTTP {response.status}")
            if i >= 2:  # the first two rounds warm up
                samples[name].append((time.perf_counter() - started) * 1000)
    out = {name: {"ms_p50": statistics.median(v), "ms_p95": workload.percentile(v, 95)}
           for name, v in samples.items()}
    out["ratio_p50"] = out["long_email"]["ms_p50"] / out["typical"]["ms_p50"]
    out["repeats"] = repeats
    return out


METRIC_LINE = re.compile(
    r'^(smart_support_[a-z_]+?)(_sum|_count|_total)?\{([^}]*)\}\s+([0-9.eE+-]+)$')


def server_breakdown(server: Server) -> dict:
    """Mean time per /classify request inside the app, by stage, from the server's /metrics.

    Compared with the server CPU per request (from /proc), it shows where time goes beyond the
    model: stages the app times itself (preprocess, forward, ...), the rest of the Flask
    request, and what lies outside Flask (gunicorn, sockets, access log). Metric names are the
    service's own; if they change this returns what it can find."""
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    sums, counts, answers = {}, {}, {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if not match:
            continue
        name, suffix, labels, value = match.groups()
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if name == "smart_support_stage_seconds" and suffix in ("_sum", "_count"):
            (sums if suffix == "_sum" else counts)[labels.get("stage")] = float(value)
        elif name == "smart_support_http_request_seconds" and suffix in ("_sum", "_count"):
            endpoint = labels.get("endpoint", "")
            if "classify" in endpoint and "batch" not in endpoint:
                (sums if suffix == "_sum" else counts)["request"] = float(value)
        elif name == "smart_support_answers" and suffix == "_total":
            answers[labels.get("model", "?")] = float(value)
    means = {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}
    out = {"mean_ms": means, "requests": counts.get("request"), "answers_by_model": answers}
    if "request" in means:
        out["stages_ms"] = sum(v for k, v in means.items() if k != "request")
        out["rest_of_request_ms"] = means["request"] - out["stages_ms"]
    return out


def ours_server(args, port: int, log_dir: Path, metrics_dir: Path) -> Server:
    env = child_env(HOST="127.0.0.1", PORT=port, WORKERS=SERVER_WORKERS,
                    SMART_SUPPORT_MODEL_DIR=args.model_dir,
                    PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    return Server("smart-support", [GUNICORN, "-c", "gunicorn.conf.py", "wsgi:app"], ROOT, env,
                  log_dir / "server-smart-support.log")


def reference_server(args, port: int, log_dir: Path) -> Server:
    # Started from bench/ so gunicorn does not pick up the repo's gunicorn.conf.py.
    env = child_env(PORT=port, REFERENCE_MODEL_DIR=Path(args.model_dir).resolve(),
                    REFERENCE_TORCH_THREADS=1)
    argv = [GUNICORN, "-w", SERVER_WORKERS, "-k", "sync", "-b", f"127.0.0.1:{port}",
            "--timeout", 120, "reference_seed_server:app"]
    return Server("reference-seed", argv, BENCH, env, log_dir / "server-reference-seed.log")


def load_levels(server: Server, levels, key: str, results, profile, duration: float,
                bodies: Path, log_dir: Path) -> None:
    """Warm up, then wrk at each connection level while memory is sampled; rows go to
    results["http"][key] as they come (a failure keeps the levels done), memory to key_memory."""
    warm_up(server, bodies, profile["warmup"], log_dir)
    sampler = MemorySampler(server)
    sampler.start()
    rows = []
    try:
        for c in levels:
            rows.append(run_wrk(server, c, duration, bodies,
                                log_dir / f"wrk-{server.name}-c{c}.txt"))
            results["http"][key] = rows
    finally:
        sampler.stopped.set()
        sampler.join()
    results["http"][f"{key}_memory"] = memory_report(server, sampler)


def ratio_rounds(args, profile, server: Server, bodies: Path, duration: float,
                 log_dir: Path, python: Path = PYTHON) -> list[dict]:
    """HTTP at 16 connections against the in-process limit of the server's layout, each HTTP
    run bracketed by a limit run before and after it: limit, HTTP, limit, HTTP, ..., limit.

    This host's speed drifts by several percent over minutes, and by up to a quarter between
    runs a minute apart (session 9), so the ratio of (a)'s limit to (b)'s throughput, taken
    minutes apart, moves with it. Each HTTP run is set against the mean of the two limit runs
    around it, which cancels a drift that is steady over the round; the rounds' median is
    the figure."""
    log(f"\n== (b') HTTP at 16 connections / in-process limit, {profile['ratio_rounds']} "
        "round(s), each HTTP run between two limit runs ==")
    rounds = []
    before = run_parallel(args, profile, 1, python=python)
    for k in range(profile["ratio_rounds"]):
        http = run_wrk(server, 16, duration, bodies, log_dir / f"wrk-ratio-{k + 1}.txt")
        after = run_parallel(args, profile, 1, python=python)
        limit = (before["tickets_per_s"] + after["tickets_per_s"]) / 2
        rounds.append({"limit_tickets_per_s": round(limit, 1),
                       "limit_before_after": [round(before["tickets_per_s"], 1),
                                              round(after["tickets_per_s"], 1)],
                       "limit_cpu_cores": round((before["cpu_cores"] + after["cpu_cores"]) / 2,
                                                3),
                       "limit_cpu_ms_per_ticket": round(statistics.mean(
                           p["cpu_cores"] * 1000 / p["tickets_per_s"] for p in (before, after)),
                           4),
                       "http_rps": round(http["rps"], 1),
                       "http_server_cores": http["server_cores"],
                       "http_wrk_cores": http["wrk_cores"],
                       "http_foreign_cores": http["foreign_cores"],
                       "http_cpu_ms_per_request": http["server_cpu_ms_per_request"],
                       "http_p99_ms": http["p99_ms"],
                       "ratio": round(http["rps"] / limit, 4),
                       "non2xx": http["non2xx"],
                       "foreign_cores": max(before["foreign_cores"], http["foreign_cores"],
                                            after["foreign_cores"])})
        log(f"  round {k + 1}: limit {before['tickets_per_s']:.1f} before, "
            f"{after['tickets_per_s']:.1f} after (mean {limit:.1f}) tickets/s, HTTP "
            f"{http['rps']:.1f} req/s: {rounds[-1]['ratio']:.1%}")
        before = after
    return rounds


def phase_http(args, profile, results, bodies: Path, log_dir: Path) -> None:
    if shutil.which("wrk") is None:
        message = ("wrk is not installed: skipping the HTTP part (b, c, d). Install it with "
                   "`apt-get install -y wrk` (`make bench` does this when run as root).")
        log("\n== (b-d) HTTP ==\n  " + message)
        results["http"]["skipped"] = message
        return
    duration = args.duration or profile["duration"]
    results["http"]["duration_s"] = duration
    tickets = workload.read_tickets(args.data)
    typical_index = results.get("typical_index", len(tickets) // 2)
    long_subject, long_body = workload.long_email(tickets)

    log(f"\n== (b, d) Smart-Support server as deployed: {SERVER_WORKERS} workers, "
        f"wrk {duration} s per level ==")
    overrides = {k: v for k, v in os.environ.items() if k.startswith("SMART_SUPPORT_")}
    results["http"]["ours_env_overrides"] = overrides
    if overrides:
        log(f"  note: SMART_SUPPORT_* settings inherited from your environment: {overrides}")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics_dir:
        try:
            with ours_server(args, free_port(), log_dir, Path(metrics_dir)) as server:
                results["http"]["ours_ready_s"] = server.ready_s
                load_levels(server, CONNECTIONS, "ours", results, profile, duration, bodies,
                            log_dir)
                try:
                    results["http"]["ours_breakdown"] = server_breakdown(server)
                except (OSError, ValueError) as exc:
                    log(f"  note: no stage breakdown from /metrics ({exc})")
                m = results["http"]["ours_memory"]
                log(f"  memory: total peak RSS {m['total_peak_rss_mib']:.0f} MiB "
                    f"(PSS {m['total_pss_mib']:.0f} MiB); worst worker peak "
                    f"{m['worker_peak_rss_mib_max']:.0f} MiB")
                results["http"]["ours_long_input"] = http_long_input(
                    server, tickets[typical_index], long_subject, long_body,
                    profile["http_long_repeats"])
                li = results["http"]["ours_long_input"]
                log(f"  long e-mail over HTTP: {li['long_email']['ms_p50']:.1f} ms vs typical "
                    f"{li['typical']['ms_p50']:.1f} ms (x{li['ratio_p50']:.2f})")
                if not args.skip_inprocess:
                    results["http"]["ratio_rounds"] = ratio_rounds(args, profile, server,
                                                                   bodies, duration, log_dir)
        except BenchError as exc:
            log(f"  ERROR: {exc}")
            results["errors"].append(f"smart-support server: {exc}")

    if args.skip_reference:
        return
    log(f"\n== (c) REFERENCE seed-shaped server (fp32 DistilBERT-shaped x2 passes, unbatched), "
        f"wrk {duration} s per level ==")
    try:
        with reference_server(args, free_port(), log_dir) as server:
            results["http"]["reference_ready_s"] = server.ready_s
            load_levels(server, REFERENCE_CONNECTIONS, "reference", results, profile, duration,
                        bodies, log_dir)
    except BenchError as exc:
        log(f"  ERROR: {exc}")
        results["errors"].append(f"reference server: {exc}")


# --------------------------------------------------------------------------------------------
# summary

def phase_accuracy(args, results) -> None:
    """The served model against v1 (its teacher as first served: torch int8), macro-F1 on the
    held-out files pooled and on the outside author's file, by `smart-support compare`, so the
    accuracy target sits in the same report as the speed targets."""
    log("\n== (e) accuracy: the served model against v1 ==")
    teacher = (results.get("model_teacher") or "").strip()
    if not teacher or not (Path(teacher) / "metadata.json").is_file():
        log(f"  skipped: the model names no teacher directory with a model ({teacher or 'none'})")
        return
    runs = {"held_out": list(args.accuracy_data)}
    if args.outside_data and Path(args.outside_data).is_file():
        runs["outside"] = [args.outside_data]
    out = {}
    for name, files in runs.items():
        if not files:
            continue
        with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
            report_path = Path(tmp) / "compare.json"
            argv = [VENV_BIN / "smart-support", "compare",
                    *[a for f in files for a in ("--data", f)], "--model-dir", args.model_dir,
                    "--against", teacher, "--against-runtime", "torch",
                    "--out", report_path]
            proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                                  env=child_env(), cwd=ROOT, timeout=900)
            if proc.returncode != 0:
                raise BenchError(f"smart-support compare ({name}) failed: "
                                 f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
            out[name] = json.loads(report_path.read_text())
        log("  " + "\n  ".join(line for line in proc.stdout.strip().splitlines()
                                if not line.startswith("report written")))
    results["accuracy_vs_v1"] = out


def summarise(results: dict) -> dict:
    """The handful of figures that answer "how fast, compared with what"."""
    s: dict = {}
    rounds = results["http"].get("ratio_rounds")
    if rounds:
        s["http_c16_over_limit_alternating"] = statistics.median(r["ratio"] for r in rounds)
        s["http_c16_over_limit_alternating_rounds"] = [r["ratio"] for r in rounds]
    for name, report in results.get("accuracy_vs_v1", {}).items():
        s[f"accuracy_vs_v1_{name}"] = {
            "tickets": report["data"]["tickets"], "difference": report["difference"],
            "ci95": report["bootstrap"]["ci95"], "model": report["model"]["macro_f1"],
            "v1": report["against"]["macro_f1"]}
    http = results["http"]
    ours = {r["connections"]: r for r in http.get("ours", [])}
    ref = {r["connections"]: r for r in http.get("reference", [])}
    if 16 in ours and 16 in ref:
        s["throughput_ratio_vs_reference_c16"] = ours[16]["rps"] / ref[16]["rps"]
    if 1 in ours and 1 in ref:
        s["p50_ratio_reference_over_ours_c1"] = ref[1]["p50_ms"] / ours[1]["p50_ms"]
    if 1 in ours:
        s["ours_p50_ms_c1"] = ours[1]["p50_ms"]
    if 16 in ours:
        s["ours_p99_ms_c16"] = ours[16]["p99_ms"]
        s["ours_mean_ms_c16"] = ours[16]["mean_ms"]
        s["ours_rps_c16"] = ours[16]["rps"]
    if 16 in ref:
        s["reference_rps_c16"] = ref[16]["rps"]
    if ours:
        s["ours_best_rps"] = max(r["rps"] for r in ours.values())
        s["ours_non2xx_total"] = sum(r["non2xx"] for r in ours.values())
        s["ours_socket_errors_total"] = sum(r["socket_errors_total"] for r in ours.values())
        s["ours_degraded_total"] = sum(r.get("degraded", 0) for r in ours.values())

    inproc = results["inprocess"]
    parallel = {p["batch_size"]: p for p in inproc.get("parallel", [])}
    if parallel:
        best = max(parallel.values(), key=lambda p: p["tickets_per_s"])
        s["inprocess_layout_best_tickets_per_s"] = best["tickets_per_s"]
        s["inprocess_layout_best_batch_size"] = best["batch_size"]
        if 1 in parallel:
            s["inprocess_layout_batch1_tickets_per_s"] = parallel[1]["tickets_per_s"]
        if 16 in ours:
            s["http_c16_over_inprocess_layout_best"] = ours[16]["rps"] / best["tickets_per_s"]
            if 1 in parallel:
                s["http_c16_over_inprocess_layout_batch1"] = (ours[16]["rps"]
                                                              / parallel[1]["tickets_per_s"])
    # R / L = (cores the server got / cores the copies used) x (CPU per ticket in-process /
    # CPU per request over HTTP): which of the two explains the gap. From the bracketed rounds
    # when they recorded both sides (medians over rounds: the same runs as the ratio to read),
    # else from (b)'s 16-connection level against (a)'s limit, minutes apart.
    if rounds and all("http_cpu_ms_per_request" in r for r in rounds):
        def median_of(key):
            return statistics.median(r[key] for r in rounds)

        s["gap_c16"] = {
            "source": "bracketed rounds",
            "server_cores": median_of("http_server_cores"), "wrk_cores": median_of(
                "http_wrk_cores"), "foreign_cores": median_of("http_foreign_cores"),
            "inprocess_cores": median_of("limit_cpu_cores"),
            "http_cpu_ms_per_request": median_of("http_cpu_ms_per_request"),
            "inprocess_cpu_ms_per_ticket": median_of("limit_cpu_ms_per_ticket"),
        }
    elif 16 in ours and 1 in parallel and parallel[1].get("cpu_cores"):
        p1, h = parallel[1], ours[16]
        s["gap_c16"] = {
            "source": "minutes apart",
            "server_cores": h["server_cores"], "wrk_cores": h["wrk_cores"],
            "foreign_cores": h["foreign_cores"], "inprocess_cores": p1["cpu_cores"],
            "http_cpu_ms_per_request": h["server_cpu_ms_per_request"],
            "inprocess_cpu_ms_per_ticket": p1["cpu_cores"] * 1000 / p1["tickets_per_s"],
        }
    if "gap_c16" in s:
        g = s["gap_c16"]
        g["cores_factor"] = g["server_cores"] / g["inprocess_cores"]
        g["cpu_factor"] = g["inprocess_cpu_ms_per_ticket"] / g["http_cpu_ms_per_request"]
    foreign = [r["foreign_cores"] for r in http.get("ours", []) + http.get("reference", [])]
    foreign += [row["foreign_cores"] for t in inproc.get("tables", []) for row in t["rows"]]
    foreign += [p["foreign_cores"] for p in inproc.get("parallel", [])]
    if foreign:
        s["max_foreign_cores"] = max(foreign)
    for table in inproc.get("tables", []):
        key = (f"{table.get('runtime', 'torch')}_"
               f"{'int8' if table['quantize'] == 'int8' else 'fp32'}_{table['threads']}thread")
        rows = [r for r in table["rows"] if r["order"] == "sorted"]
        top = max(rows, key=lambda r: r["tickets_per_s"])
        s[f"inprocess_best_{key}"] = {"tickets_per_s": top["tickets_per_s"],
                                      "batch_size": top["batch_size"]}
        by_size = {r["batch_size"]: r for r in rows}
        if 1 in by_size:
            s[f"inprocess_batch1_{key}"] = {"tickets_per_s": by_size[1]["tickets_per_s"],
                                            "call_ms_p50": by_size[1]["call_ms_p50"]}
        if table.get("max_rss_mib"):
            s[f"inprocess_rss_mib_{key}"] = table["max_rss_mib"]
        if served_table(table) and "long_input" in table:
            s["long_email_over_typical_inprocess"] = table["long_input"]["ratio_p50"]
            s["long_email_ms_inprocess"] = table["long_input"]["long_email"]["ms_p50"]
            s["typical_ms_inprocess"] = table["long_input"]["typical"]["ms_p50"]
    if "ours_long_input" in http:
        s["long_email_over_typical_http"] = http["ours_long_input"]["ratio_p50"]
    if "ours_memory" in http:
        m = http["ours_memory"]
        s["total_peak_rss_mib"] = m["total_peak_rss_mib"]
        s["total_pss_mib"] = m["total_pss_mib"]
        s["worker_peak_rss_mib_max"] = m["worker_peak_rss_mib_max"]
    return s


def accuracy(s: dict, name: str) -> str:
    """`difference [low, high] (model vs v1, N tickets)`, or n/a."""
    a = s.get(f"accuracy_vs_v1_{name}")
    if not a:
        return "n/a"
    return (f"{a['difference']:+.4f} [{a['ci95'][0]:+.4f}, {a['ci95'][1]:+.4f}] "
            f"({a['model']:.4f} vs {a['v1']:.4f}, {a['tickets']} tickets, paired bootstrap)")


def print_summary(s: dict, results: dict) -> None:
    def fmt(key, pattern):
        return pattern.format(s[key]) if key in s else "n/a"

    def has(*keys):
        return all(k in s for k in keys)

    lines = [
        ("throughput at 16 connections, ours / reference",
         fmt("throughput_ratio_vs_reference_c16", "x{:.2f}")
         + (f"  ({s['ours_rps_c16']:.1f} vs {s['reference_rps_c16']:.1f} req/s)"
            if has("ours_rps_c16", "reference_rps_c16") else "")),
        ("our p50 at 1 connection", fmt("ours_p50_ms_c1", "{:.1f} ms")),
        ("our p99 at 16 connections", fmt("ours_p99_ms_c16", "{:.1f} ms")
         + (f"  ({closed_loop(s)})" if has("ours_mean_ms_c16", "ours_rps_c16") else "")),
        ("HTTP at 16 conn / in-process limit, bracketed",
         fmt("http_c16_over_limit_alternating", "{:.1%}")
         + (f"  (median of rounds "
            f"{', '.join(f'{r:.1%}' for r in s['http_c16_over_limit_alternating_rounds'])}: "
            "each HTTP run against the mean of a limit run just before and one just after it)"
            if has("http_c16_over_limit_alternating_rounds") else "")),
        ("... against a limit measured minutes before",
         fmt("http_c16_over_inprocess_layout_best", "{:.0%}")
         + (f"  (limit {s['inprocess_layout_best_tickets_per_s']:.1f} tickets/s: "
            f"{SERVER_WORKERS} {' '.join(SERVED)} processes x 1 thread in parallel, batch "
            f"{s['inprocess_layout_best_batch_size']}; the host's speed drifts in between)"
            if has("inprocess_layout_best_tickets_per_s") else "")),
        ("... same, limit at batch 1 (/classify runs it)",
         fmt("http_c16_over_inprocess_layout_batch1", "{:.0%}")
         + (f"  (limit {s['inprocess_layout_batch1_tickets_per_s']:.1f} tickets/s)"
            if has("inprocess_layout_batch1_tickets_per_s") else "")),
        ("server memory (master + workers), peak RSS",
         fmt("total_peak_rss_mib", "{:.0f} MiB")
         + (f"  (PSS {s['total_pss_mib']:.0f} MiB; worst worker "
            f"{s['worker_peak_rss_mib_max']:.0f} MiB)" if has("total_pss_mib") else "")),
        ("20,000-char e-mail / typical ticket, in-process",
         fmt("long_email_over_typical_inprocess", "x{:.2f}")
         + (f"  ({s['long_email_ms_inprocess']:.1f} vs {s['typical_ms_inprocess']:.1f} ms, "
            f"{' '.join(SERVED)}, 1 thread)" if has("long_email_ms_inprocess") else "")),
        ("... same over HTTP", fmt("long_email_over_typical_http", "x{:.2f}")),
        ("one ticket in-process, 1 thread: onnx int8 / torch int8",
         (f"{s['inprocess_batch1_onnx_int8_1thread']['call_ms_p50']:.2f} / "
          f"{s['inprocess_batch1_torch_int8_1thread']['call_ms_p50']:.2f} ms p50; process RSS "
          f"{s.get('inprocess_rss_mib_onnx_int8_1thread', 0):.0f} / "
          f"{s.get('inprocess_rss_mib_torch_int8_1thread', 0):.0f} MiB")
         if has("inprocess_batch1_onnx_int8_1thread", "inprocess_batch1_torch_int8_1thread")
         else "n/a"),
        ("served model - v1, macro-F1, held-out files pooled", accuracy(s, "held_out")),
        ("... on the outside author's file", accuracy(s, "outside")),
        ("non-2xx / socket errors / degraded answers",
         f"{s.get('ours_non2xx_total', 'n/a')} / {s.get('ours_socket_errors_total', 'n/a')} / "
         f"{s.get('ours_degraded_total', 'n/a')}"),
    ]
    if "gap_c16" in s:
        g = s["gap_c16"]
        lines.append((f"why HTTP at 16 conn is below the limit ({g.get('source', 'minutes apart')})",
                      f"server got {g['server_cores']:.2f} cores vs {g['inprocess_cores']:.2f} "
                      f"for the in-process copies (wrk {g['wrk_cores']:.2f}, others "
                      f"{g['foreign_cores']:.2f}): x{g['cores_factor']:.2f}; CPU per request "
                      f"{g['http_cpu_ms_per_request']:.1f} ms over HTTP vs "
                      f"{g['inprocess_cpu_ms_per_ticket']:.1f} ms in-process: "
                      f"x{g['cpu_factor']:.2f}"))
    log("\n== summary ==")
    for label, value in lines:
        log(f"  {label:<50} {value}")
    if s.get("max_foreign_cores", 0) > NOISY_FOREIGN_CORES:
        log(f"  WARNING: other processes used up to {s['max_foreign_cores']:.2f} cores during "
            "some measurements: those figures are low; rerun on a quiet machine to compare.")
    if results["errors"]:
        log("  ERRORS: " + "; ".join(e.splitlines()[0] for e in results["errors"]))


# --------------------------------------------------------------------------------------------

def git_state() -> dict:
    """Read-only: which commit was measured and whether the tree had local changes."""
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def preflight(args) -> None:
    problems = []
    if not PYTHON.exists() or not GUNICORN.exists():
        problems.append(f"{VENV_BIN.parent} is missing or incomplete: run `make install`")
    if not (Path(args.model_dir) / "metadata.json").is_file():
        problems.append(f"no model in {args.model_dir}: run `make model`")
    if not Path(args.data).is_file():
        problems.append(f"no ticket file {args.data}")
    if problems:
        raise SystemExit("bench: cannot run:\n  " + "\n  ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="about 3 minutes: 1 repeat, 5 s per wrk level")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds per wrk level (default 15, or 5 with --quick)")
    parser.add_argument("--data", default="data/test.jsonl")
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                        help="wait, at most this long in all, for other processes to go quiet "
                             "before each measurement (default 90, 30 with --quick; 0: never)")
    parser.add_argument("--skip-inprocess", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--accuracy-data", nargs="*", default=["data/test.jsonl"],
                        help="held-out files pooled for the served model against v1 "
                             "(`make bench`: every held-out file `make evaluate` scores)")
    parser.add_argument("--outside-data", default="../shared/eval/dev_tickets.jsonl",
                        help="the outside author's file, compared on its own when present")
    args = parser.parse_args()
    os.chdir(ROOT)
    preflight(args)
    profile = PROFILES["quick" if args.quick else "full"]
    QUIET.__init__(profile["wait_quiet"] if args.wait_quiet is None else args.wait_quiet)
    out = args.out.resolve()
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    metadata = json.loads((Path(args.model_dir) / "metadata.json").read_text())
    config = json.loads((Path(args.model_dir) / "classifier" / "config.json").read_text())
    results = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profile": "quick" if args.quick else "full", "settings": profile,
        "machine": sysinfo.machine(), "git": git_state(),
        "model_version": metadata.get("version"), "data": args.data,
        "model_layers": config.get("num_hidden_layers") or config.get("n_layers"),
        "model_teacher": (metadata.get("hyperparameters") or {}).get("teacher"),
        "inprocess": {}, "http": {}, "errors": [],
    }
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)  # all end as KeyboardInterrupt: servers get stopped
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bodies-") as tmp:
            tickets = workload.read_tickets(args.data)
            bodies = Path(tmp) / "bodies.jsonl"
            bodies.write_text("\n".join(workload.request_body(t) for t in tickets) + "\n")
            if not args.skip_inprocess:
                try:
                    phase_inprocess(args, profile, results)
                    long_input = next((t["long_input"] for t in results["inprocess"]["tables"]
                                       if "long_input" in t and served_table(t)), None)
                    if long_input:
                        results["typical_index"] = long_input["typical"]["index"]
                except BenchError as exc:
                    log(f"  ERROR: {exc}")
                    results["errors"].append(f"in-process: {exc}")
            if not args.skip_http:
                phase_http(args, profile, results, bodies, log_dir)
            if not args.skip_accuracy:
                try:
                    phase_accuracy(args, results)
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    log(f"  ERROR: {exc}")
                    results["errors"].append(f"accuracy: {exc}")
    except KeyboardInterrupt:
        log("\ninterrupted: stopping every process this benchmark started")
        CHILDREN.stop_all()
        return 130
    finally:
        CHILDREN.stop_all()

    results["elapsed_s"] = time.monotonic() - started
    results["waited_for_quiet_s"] = QUIET.waited
    results["machine"]["loadavg_after"] = os.getloadavg()
    results["summary"] = summarise(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    import report  # matplotlib is only needed here
    report.write(results, out)
    print_summary(results["summary"], results)
    log(f"\nwrote {out / 'report.md'}, {out / 'plot.png'}, {out / 'results.json'} "
        f"(logs in {log_dir}); took {results['elapsed_s'] / 60:.1f} min")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
