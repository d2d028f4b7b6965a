"""The experiments behind the README's "measured, not shipped" figures, rerunnable:

    .venv/bin/python bench/experiments.py batching           # about 2 min
    .venv/bin/python bench/experiments.py layouts            # about 3 min; needs wrk
    .venv/bin/python bench/experiments.py overhead           # about 6 min; needs wrk
    .venv/bin/python bench/experiments.py floor              # about 4 min; needs wrk
    .venv/bin/python bench/experiments.py preemption         # about 2 min; needs wrk, chrt
    .venv/bin/python bench/experiments.py prediction-log     # seconds
    .venv/bin/python bench/experiments.py in-app             # about 1 min
    .venv/bin/python bench/experiments.py lean               # about 7 min; needs wrk
    .venv/bin/python bench/experiments.py interpreters --venv DIR  # about 2 min a round; wrk
    .venv/bin/python bench/experiments.py models models DIR  # per-ticket speed of model dirs
    .venv/bin/python bench/experiments.py instructions       # 1-3 min per checkout; valgrind
    .venv/bin/python bench/experiments.py ensemble           # about 1 min
    .venv/bin/python bench/experiments.py alerts             # about 30 s
    .venv/bin/python bench/experiments.py budgets            # about 5 min; wrk for HTTP

batching: in process, int8, the shipped model. Tickets/s when groups of 16 random test
          tickets go through one call cut into sub-batches of 1 to 16 (what micro-batching
          does with concurrent requests), with 1 and 2 torch threads; and 16 threads calling
          the service with micro-batching on (mean requests per model call).
layouts:  the server as deployed, under wrk (bench/wrk_post.lua) at 1 and 16 connections, for
          2 sync workers (the default) and 1 gthread worker x 16 threads with micro-batching;
          total RSS of master and workers at the end.
overhead: the deployed server under wrk at 16 connections, once as shipped and once with each
          per-request cost taken away (prediction log, access log, ...), variants interleaved over
          rounds; median req/s and server CPU per request of each, so each cost's share is
          measured in one run. One variant keeps connections alive (gthread, 1 thread).
preemption: the deployed server under wrk at 16 connections, wrk run as usual and under
          SCHED_BATCH (`chrt --batch 0`: its wake-ups do not preempt the running task),
          interleaved rounds on one server: the workers' preemptions per request against
          their CPU per request, so what the preemptions cost is measured.
floor:    server CPU per request at 16 connections of the shipped app against two REFERENCE
          apps (bench/floor_apps.py: plain WSGI, minimal Flask) on the same gunicorn settings,
          interleaved rounds; and the served model's CPU per ticket in process (onnx int8,
          1 thread, batch 1), so the overhead of HTTP at its least and as shipped is known.
in-app:   in process, no HTTP: CPU per POST /classify through the shipped Flask app (called
          as gunicorn calls it, one WSGI request per test ticket), against the service's
          triage alone on the same tickets, and against the app with its triage replaced by
          a constant answer; interleaved rounds. What the app costs with a warm cache and
          what it costs between forward passes, which evict each other's working set.
interpreters: the server and the in-process limit on this virtual environment's interpreter
          and on each --venv's (Debian's python3.11 against pyenv's, say), interleaved rounds,
          each HTTP run between two limit reads on the same interpreter: what the interpreter's
          build is worth in throughput, CPU per request and share of the limit.
lean:     the in-process limit of the server's layout (2 one-thread processes, batch 1, as in
          `make bench`), read before the first round and after each, and between the reads
          the shipped server against two REFERENCE apps
          (bench/lean_apps.py: the model behind a plainer /classify view, with and without
          the route's features) under wrk at 16 connections, interleaved rounds: how close to
          the limit the route's layers let HTTP come.
prediction-log: CPU per prediction-log row written one per transaction (what a request did
          before batching) and in batches of 12 and 100 (`Storage.record_predictions` on a
          temporary SQLite file, median of 5 rounds).
models:   median time of one ticket per call (int8, 1 thread, in torch and in onnx) for each
          model directory, three rounds interleaved, over the 299 test tickets (e.g. the default
          against a student made with `smart-support shrink` and `train --teacher`, README
          "Performance").
instructions: instructions per POST /classify through the app with a constant answer (no
          model), counted by valgrind's callgrind over the 299 test tickets: repeatable to a
          fraction of a percent on a busy or drifting host, where timings cannot resolve tens
          of microseconds. `--source DIR` (repeatable) counts another checkout's app, such as
          a `git worktree` of an earlier commit, on the same model and tickets.
ensemble: accuracy, not speed: the served student (onnx int8) averaged with the TF-IDF baseline
          that ships in the model directory, p = (1 - w) student + w baseline. w is chosen on
          the model's own validation split only (its held-out writer, from metadata.json);
          then macro-F1 (model argmax, no billing rule) of student, baseline and ensemble on
          our four held-out test files, pooled, and on the outside author's file (read where
          it lies, never tuned on), and the CPU per ticket of each side, one ticket per call
          (the baseline as served, and through scikit-learn's own transform); and, on the
          validation split only, urgency blended the same way (Spearman, alerts above 0.8).
alerts:   accuracy, not speed: would another alert threshold on the served urgency catch more
          urgent tickets? The threshold with the best F1 for "urgency > 0.8" on the model's
          validation split only (0.50 to 0.84 in steps of 0.02; a tie goes to the higher),
          then alert precision and recall at 0.8 and at that threshold on our four held-out
          files pooled and on the outside author's file (reported only).
budgets:  the token budget (SMART_SUPPORT_MAX_TOKENS) traded for speed, per budget of
          --budgets: the served answer's macro-F1 and urgency Spearman (onnx int8, the
          guarded billing rule) on the model's validation split (its held-out writer: where
          a budget may be chosen), on our four held-out test files pooled and on the outside
          author's file (both reported only); and in process, 1 thread, one ticket per call
          over the test tickets in interleaved rounds, the CPU per ticket (median, mean, p95,
          p99) and the tokens read per ticket; then, when wrk is installed, the deployed
          server at each budget under wrk at 16 connections, interleaved rounds: req/s, p99
          and server CPU per request.

Each writes bench/results/experiments-<name>.json and prints its figures.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import workload  # noqa: E402
from procs import child_env, free_port, log  # noqa: E402


def test_tickets():
    from smart_support.inference.predictor import Ticket

    rows = workload.read_tickets(ROOT / "data/test.jsonl")
    return [Ticket(r.get("subject") or "", r["description"]) for r in rows]


def batching(args) -> dict:
    from smart_support import create_app

    tickets = test_tickets()
    random.Random(0).shuffle(tickets)
    groups = [tickets[i:i + 16] for i in range(0, len(tickets) - 15, 16)]
    out = {"sub_batches": {}, "micro_batching": {}}
    for threads in (1, 2):
        app = create_app({"model_dir": args.model_dir, "storm_enabled": False,
                          "torch_threads": threads, "micro_batching": True,
                          "data_dir": Path(tempfile.mkdtemp(prefix="experiments-"))})
        service = app.extensions["smart_support"]
        predictor = service.predictor
        for size in (1, 2, 4, 8, 16):
            predictor.batch_size = size
            started = time.perf_counter()
            for group in groups:
                predictor.predict(group)
            rate = 16 * len(groups) / (time.perf_counter() - started)
            out["sub_batches"][f"threads={threads} sub_batch={size}"] = round(rate, 1)
            log(f"threads {threads}, 16 random tickets per call in sub-batches of {size}: "
                f"{rate:.1f} tickets/s")
        predictor.batch_size = 32
        sizes = []
        service.batcher._on_batch = sizes.append
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: service.triage([tickets[i % len(tickets)]]), range(320)))
        rate = 320 / (time.perf_counter() - started)
        out["micro_batching"][f"threads={threads}"] = {
            "tickets_per_s": round(rate, 1), "mean_requests_per_call": round(
                statistics.mean(sizes), 2)}
        log(f"threads {threads}, 16 callers with micro-batching: {rate:.1f} tickets/s, "
            f"{statistics.mean(sizes):.2f} requests per model call")
    return out


LOG_DIR = BENCH / "results" / "logs"


def bodies_file() -> Path:
    """The test tickets as wrk request bodies, one per line."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    bodies = LOG_DIR / "experiments-bodies.jsonl"
    rows = workload.read_tickets(ROOT / "data/test.jsonl")
    bodies.write_text("".join(workload.request_body(r) + "\n" for r in rows))
    return bodies


def deployed_server(name: str, model_dir: str, app: str = "wsgi:app", gunicorn=None,
                    **environment):
    """The server as deployed (gunicorn.conf.py), with `environment` on top, on a free port and
    private state directories; `app` swaps in another WSGI app (the floor references), and
    `gunicorn` another virtual environment's gunicorn (interpreters)."""
    import run

    env = child_env(HOST="127.0.0.1", PORT=free_port(), SMART_SUPPORT_MODEL_DIR=model_dir,
                    SMART_SUPPORT_DATA_DIR=tempfile.mkdtemp(prefix="experiments-"),
                    PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="experiments-"),
                    **environment)
    if app != "wsgi:app":
        env["PYTHONPATH"] = str(BENCH)
    return run.Server(name, [gunicorn or run.GUNICORN, "-c", "gunicorn.conf.py", app], ROOT, env,
                      LOG_DIR / "experiments-server.log")


def layouts(args) -> dict:
    import run
    import sysinfo

    bodies, log_dir = bodies_file(), LOG_DIR
    layouts_ = {"2 sync workers (default)": {"WORKERS": 2, "THREADS": 1},
                "1 gthread worker x 16, micro-batching": {
                    "WORKERS": 1, "THREADS": 16, "SMART_SUPPORT_MICRO_BATCHING": "true"}}
    out = {}
    for name, layout in layouts_.items():
        with deployed_server(name, args.model_dir, SMART_SUPPORT_ACCESS_LOG="/dev/null",
                             SMART_SUPPORT_LOG_LEVEL="WARNING", **layout) as server:
            run.warm_up(server, bodies, 8, log_dir)
            row = {}
            for connections in (1, 16):
                result = run.run_wrk(server, connections, args.duration, bodies,
                                     log_dir / f"experiments-wrk-{connections}.txt")
                row[str(connections)] = {k: round(result[k], 1) if isinstance(result[k], float)
                                         else result[k]
                                         for k in ("rps", "p50_ms", "p99_ms", "non2xx",
                                                   "foreign_cores")}
                log(f"{name}, {connections} connections: {row[str(connections)]}")
            row["total_rss_mib"] = round(sum(sysinfo.memory_kib(p).get("VmRSS", 0)
                                             for p in server.pids()) / 1024)
            log(f"{name}: total RSS {row['total_rss_mib']} MiB")
        out[name] = row
    return out


OVERHEAD_VARIANTS = {
    "as shipped": {},
    "prediction log written per request": {"SMART_SUPPORT_PREDICTION_LOG_FLUSH_SECONDS": "0"},
    "no prediction log": {"SMART_SUPPORT_RECORD_PREDICTIONS": "false"},
    "no access log": {"SMART_SUPPORT_ACCESS_LOG": ""},
    "no access log nor prediction log": {"SMART_SUPPORT_ACCESS_LOG": "",
                                         "SMART_SUPPORT_RECORD_PREDICTIONS": "false"},
    # command-line settings override gunicorn.conf.py: the same layout, kept-alive connections
    "keep-alive (gthread worker with 1 thread)": {"GUNICORN_CMD_ARGS": "-k gthread --threads 1"},
    # glibc >= 2.35 backs large malloc'd blocks (ONNX Runtime's weights) with transparent huge
    # pages: fewer TLB misses. Read at exec, so it must be in gunicorn's own environment.
    "malloc in huge pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    # one process, so wrk's kept-alive connections cannot pile up on one of two workers; its
    # threads run the model concurrently (ONNX Runtime releases the GIL), 1 intra-op thread each
    "one gthread worker x 2 threads (keep-alive)": {"WORKERS": "1", "THREADS": "2",
                                                    "SMART_SUPPORT_TORCH_THREADS": "1"},
    "one gthread worker x 3 threads (keep-alive)": {"WORKERS": "1", "THREADS": "3",
                                                    "SMART_SUPPORT_TORCH_THREADS": "1"},
    # the transformer blended with the TF-IDF baseline: one more model per ticket
    "ensemble": {"SMART_SUPPORT_ENSEMBLE": "true"},
}


def interleaved_rounds(args, servers: dict[str, dict],
                       between_rounds=None) -> dict[str, list[dict]]:
    """wrk at 16 connections against each deployed server (name -> deployed_server keywords),
    one after another, `args.rounds` times over: each server's results, in round order.
    `between_rounds()`, if given, runs before the first round and after each round."""
    import run

    bodies, log_dir = bodies_file(), LOG_DIR
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    if between_rounds:
        between_rounds()
    for round_ in range(args.rounds):
        for name, keywords in servers.items():
            with deployed_server(name, args.model_dir, **keywords) as server:
                run.warm_up(server, bodies, 4, log_dir)
                result = run.run_wrk(server, 16, args.duration, bodies,
                                     log_dir / "experiments-wrk-16.txt")
            runs[name].append(result)
            log(f"round {round_ + 1}, {name}: {result['rps']:.1f} req/s, "
                f"{result['server_cpu_ms_per_request']:.3f} ms server CPU per request")
        if between_rounds:
            between_rounds()
    return runs


def preemption(args) -> dict:
    """The shipped server under wrk at 16 connections, wrk run as usual and wrk run under
    SCHED_BATCH (`chrt --batch 0`), whose wake-ups do not preempt the running task: rounds
    interleaved on one server. If preemptions cost the workers CPU, the server's CPU per
    request falls with them."""
    import run

    launchers = {"wrk as usual": (), "wrk under SCHED_BATCH": ("chrt", "--batch", "0")}
    bodies = bodies_file()
    runs: dict[str, list[dict]] = {name: [] for name in launchers}
    with deployed_server("preemption", args.model_dir) as server:
        run.warm_up(server, bodies, 4, LOG_DIR)
        for round_ in range(args.rounds):
            for name, launcher in launchers.items():
                result = run.run_wrk(server, 16, args.duration, bodies,
                                     LOG_DIR / "experiments-wrk-16.txt", launcher)
                runs[name].append(result)
                log(f"round {round_ + 1}, {name}: {result['rps']:.1f} req/s, "
                    f"{result['server_cpu_ms_per_request']:.3f} ms server CPU per request, "
                    f"preempted {result['worker_switches_per_request']['involuntary']:.2f} "
                    "times per request")

    out = {name: {
        "median_rps": median_of(results, "rps"),
        "median_server_cpu_ms": median_of(results, "server_cpu_ms_per_request"),
        "median_preemptions_per_request": median_of(
            results, lambda r: r["worker_switches_per_request"]["involuntary"]),
        "median_waits_per_request": median_of(
            results, lambda r: r["worker_switches_per_request"]["voluntary"]),
        "median_server_cores": median_of(results, "server_cores"),
        "median_wrk_cores": median_of(results, "wrk_cores"),
        "median_p99_ms": median_of(results, "p99_ms"),
        "non2xx": sum(r["non2xx"] for r in results),
        "server_cpu_ms_by_round": [round(r["server_cpu_ms_per_request"], 3) for r in results],
    } for name, results in runs.items()}
    for name, figures in out.items():
        log(f"{name}: {figures}")
    return out


def median_of(results: list[dict], pick, digits: int = 3) -> float:
    """The median over runs of `pick`: a key of each run's dict, or a function of it."""
    value = (lambda r: r[pick]) if isinstance(pick, str) else pick
    return round(statistics.median(value(r) for r in results), digits)


def wrk_summary(results: list[dict]) -> dict:
    """One server's wrk runs (run.run_wrk) over interleaved rounds: medians and each round."""
    return {"median_rps": median_of(results, "rps", 1),
            "median_server_cpu_ms": median_of(results, "server_cpu_ms_per_request"),
            "median_p99_ms": median_of(results, "p99_ms", 1),
            "non2xx": sum(r["non2xx"] for r in results),
            "rps_by_round": [round(r["rps"], 1) for r in results],
            "p99_ms_by_round": [round(r["p99_ms"], 1) for r in results]}


def overhead(args) -> dict:
    runs = interleaved_rounds(args, {name: OVERHEAD_VARIANTS[name]
                                     for name in args.variants or OVERHEAD_VARIANTS})
    out = {}
    for name, results in runs.items():
        out[name] = wrk_summary(results)
        log(f"{name}: {out[name]}")
    return out


FLOOR_APPS = {"plain WSGI app (REFERENCE)": "floor_apps:bare",
              "minimal Flask app (REFERENCE)": "floor_apps:flask_minimal",
              "Smart-Support as shipped": "wsgi:app"}


def floor(args) -> dict:
    """Server CPU per request of the shipped app against two reference apps on the same
    gunicorn settings, in interleaved rounds, and the served model's CPU per ticket in process:
    what HTTP costs at the least, and what share of the in-process limit that leaves."""
    from smart_support.inference.artifacts import load_artifacts
    from smart_support.inference.predictor import Predictor

    predictor = Predictor(load_artifacts(args.model_dir, "onnx"), 256, 1, "int8", threads=1)
    predictor.warm_up()
    tickets = test_tickets()
    model_rounds = []
    for _ in range(args.rounds):
        started = time.process_time()
        for ticket in tickets:
            predictor.predict([ticket])
        model_rounds.append((time.process_time() - started) / len(tickets) * 1000)
    model_ms = statistics.median(model_rounds)
    log(f"in process (onnx int8, 1 thread, batch 1): {model_ms:.3f} ms of CPU per ticket")
    del predictor

    runs = interleaved_rounds(args, {name: {"app": app} for name, app in FLOOR_APPS.items()})
    out = {"model_cpu_ms_per_ticket": round(model_ms, 3),
           "model_cpu_ms_by_round": [round(m, 3) for m in model_rounds]}
    for name, results in runs.items():
        cpu = statistics.median(r["server_cpu_ms_per_request"] for r in results)
        out[name] = {
            "median_rps": round(statistics.median(r["rps"] for r in results), 1),
            "median_server_cpu_ms": round(cpu, 3),
            "median_server_cores": round(statistics.median(r["server_cores"] for r in results), 3),
            "non2xx": sum(r["non2xx"] for r in results),
            "rps_by_round": [round(r["rps"], 1) for r in results],
        }
        if name != "Smart-Support as shipped":
            # the share of the model's CPU limit left if serving cost only this app's CPU
            out[name]["model_share_with_this_overhead"] = round(model_ms / (model_ms + cpu), 3)
        log(f"{name}: {out[name]}")
    shipped = out["Smart-Support as shipped"]["median_server_cpu_ms"]
    out["shipped_overhead_cpu_ms"] = round(shipped - model_ms, 3)
    out["model_share_as_shipped"] = round(model_ms / shipped, 3)
    log(f"as shipped: {shipped:.3f} ms per request = {model_ms:.3f} model + "
        f"{shipped - model_ms:.3f} everything else; the model's share {model_ms / shipped:.1%}")
    return out


LEAN_APPS = {"as shipped": "wsgi:app",
             "plain Flask view, features kept (REFERENCE)": "lean_apps:features_kept()",
             "plain Flask view, no validation, metrics, logs or alerts (REFERENCE)":
                 "lean_apps:no_features()"}


def lean(args) -> dict:
    """The shipped server and two plainer /classify views against the in-process limit, read
    before the first round and after each one: each round's runs are set against the mean of
    the limit runs around that round, as `make bench` brackets its ratio (the host drifts)."""
    import run

    limits = []

    def read_limit():
        limit = run.run_parallel(argparse.Namespace(data=str(ROOT / "data/test.jsonl"),
                                                    model_dir=args.model_dir),
                                 {"parallel_duration": args.duration}, batch_size=1)
        limits.append(limit["tickets_per_s"])
        log(f"in-process limit (2 processes x 1 thread, batch 1): {limit['tickets_per_s']:.1f} "
            "tickets/s")

    runs = interleaved_rounds(args, {name: {"app": app} for name, app in LEAN_APPS.items()},
                              between_rounds=read_limit)
    around = [(before + after) / 2 for before, after in zip(limits, limits[1:])]
    out = {"inprocess_limit_tickets_per_s_by_read": [round(v, 1) for v in limits]}
    for name, results in runs.items():
        shares = [r["rps"] / limit for r, limit in zip(results, around)]
        out[name] = {
            "median_rps": round(statistics.median(r["rps"] for r in results), 1),
            "median_share_of_inprocess_limit": round(statistics.median(shares), 3),
            "share_by_round": [round(v, 3) for v in shares],
            "median_server_cpu_ms": round(statistics.median(
                r["server_cpu_ms_per_request"] for r in results), 3),
            "non2xx": sum(r["non2xx"] for r in results),
            "rps_by_round": [round(r["rps"], 1) for r in results],
        }
        log(f"{name}: {out[name]}")
    return out


def interpreters(args) -> dict:
    """The same server and in-process limit on each virtual environment's interpreter: per
    round and per interpreter, one round of `make bench`'s bracketed ratio (run.ratio_rounds:
    a limit read, wrk at 16 connections, another limit read) on that interpreter."""
    import run

    venvs = [Path(sys.executable).parent.parent] + [Path(v) for v in args.venv or ()]
    interpreters_ = {}
    for venv in venvs:
        python, gunicorn = venv / "bin" / "python", venv / "bin" / "gunicorn"
        if not gunicorn.exists():
            raise SystemExit(f"--venv {venv}: no {gunicorn}; run `make install VENV={venv}`")
        described = subprocess.run(
            [python, "-c", "import os, sys; print(sys.version.split()[0], "
                           "os.path.realpath(sys.executable))"],
            capture_output=True, text=True, check=True).stdout.split()
        interpreters_[f"{venv.name}: Python {described[0]} ({described[1]})"] = (python, gunicorn)
    data = argparse.Namespace(data=str(ROOT / "data/test.jsonl"), model_dir=args.model_dir)
    one_round = {"ratio_rounds": 1, "parallel_duration": args.duration}
    bodies = bodies_file()
    runs: dict[str, list[dict]] = {name: [] for name in interpreters_}
    for round_ in range(args.rounds):
        for name, (python, gunicorn) in interpreters_.items():
            with deployed_server(f"interpreter-{python.parent.parent.name.lstrip('.')}",
                                 args.model_dir, gunicorn=gunicorn) as server:
                run.warm_up(server, bodies, 4, LOG_DIR)
                runs[name] += run.ratio_rounds(data, one_round, server, bodies, args.duration,
                                               LOG_DIR, python=python)
            log(f"round {round_ + 1}, {name}: {runs[name][-1]['ratio']:.1%} of the limit, "
                f"{runs[name][-1]['http_cpu_ms_per_request']:.3f} ms server CPU per request")

    out = {name: {
        "median_limit_tickets_per_s": median_of(results, "limit_tickets_per_s", 1),
        "median_rps": median_of(results, "http_rps", 1),
        "median_share_of_inprocess_limit": median_of(results, "ratio"),
        "share_by_round": [round(r["ratio"], 3) for r in results],
        "median_server_cpu_ms": median_of(results, "http_cpu_ms_per_request"),
        "median_inprocess_cpu_ms_per_ticket": median_of(results, "limit_cpu_ms_per_ticket"),
        "median_p99_ms": median_of(results, "http_p99_ms", 1),
        "non2xx": sum(r["non2xx"] for r in results),
    } for name, results in runs.items()}
    for name, figures in out.items():
        log(f"{name}: {figures}")
    return out


def app_in_process(model_dir: str):
    """The shipped app in this process, the test tickets, and `post(body)`: one POST /classify
    through the app, called as gunicorn calls it (a WSGI environ, the body in wsgi.input)."""
    import io
    import os

    os.environ["SMART_SUPPORT_DATA_DIR"] = tempfile.mkdtemp(prefix="experiments-")
    from smart_support import create_app
    from smart_support.inference.predictor import Ticket

    app = create_app({"model_dir": model_dir})
    rows = workload.read_tickets(ROOT / "data/test.jsonl")
    bodies = [workload.request_body(r).encode() for r in rows]
    tickets = [Ticket(r.get("subject") or "", r["description"]) for r in rows]

    def post(body: bytes) -> None:
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/classify", "QUERY_STRING": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL":
                   "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
                   "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
                   "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
        status = []
        b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"POST /classify answered {status[0]}")

    return app, bodies, tickets, post


def in_app(args) -> dict:
    """CPU per request of the app around the model, with and without forward passes between
    requests (see the module docstring)."""
    app, bodies, tickets, post = app_in_process(args.model_dir)
    service = app.extensions["smart_support"]
    triage = service.triage
    constant = triage(tickets[:1])

    inside = []

    def timed_triage(batch):
        started = time.thread_time()
        try:
            return triage(batch)
        finally:
            inside.append(time.thread_time() - started)

    def per_item(work, items) -> float:
        started = time.thread_time()
        for item in items:
            work(item)
        return (time.thread_time() - started) / len(items) * 1000

    for body in bodies[:50]:
        post(body)
    figures = {"app with the model": [], "triage inside the app": [], "triage alone": [],
               "app with a constant answer": []}
    for _ in range(args.rounds):
        inside.clear()
        service.triage = timed_triage
        figures["app with the model"].append(per_item(post, bodies))
        figures["triage inside the app"].append(sum(inside) / len(bodies) * 1000)
        service.triage = lambda batch: (constant[0] * len(batch), dict(constant[1]))
        figures["app with a constant answer"].append(per_item(post, bodies))
        service.triage = triage
        figures["triage alone"].append(per_item(lambda t: triage([t]), tickets))
    out = {name: {"median_cpu_ms": round(statistics.median(values), 3),
                  "cpu_ms_by_round": [round(v, 3) for v in values]}
           for name, values in figures.items()}
    median = {name: out[name]["median_cpu_ms"] for name in out}
    out["app around the model, between forward passes"] = round(
        median["app with the model"] - median["triage inside the app"], 3)
    out["app around the model, warm (constant answer)"] = median["app with a constant answer"]
    out["triage slowed by the app"] = round(
        median["triage inside the app"] - median["triage alone"], 3)
    for name, value in out.items():
        log(f"{name}: {value}")
    return out


def instructions(args) -> dict:
    """Instructions per POST /classify through the app with a constant answer (no model), counted
    by valgrind's callgrind: the same count on every run, however busy or slow the host, so a
    change of tens of microseconds shows. `--source DIR` counts another checkout's app (a
    `git worktree` of an earlier commit) on the same model and tickets."""
    import re

    if shutil.which("valgrind") is None:
        raise SystemExit("instructions: needs valgrind (apt-get install -y valgrind)")
    counts = {}
    for source in args.source or [str(ROOT)]:
        source = str(Path(source).resolve())
        with tempfile.TemporaryDirectory(prefix="experiments-") as out:
            # callgrind counts only inside deque_extend: the child drains the timed requests
            # through a deque, so start-up, warm-up and exit are not counted
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", "--toggle-collect=deque_extend",
                 f"--callgrind-out-file={out}/callgrind.out", sys.executable, __file__,
                 "instructions-child", "--model-dir", str(Path(args.model_dir).resolve()),
                 "--source", source],
                cwd=source, env=child_env(PYTHONHASHSEED="0"),
                capture_output=True, text=True, timeout=1800)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        requests = re.search(r"^REQUESTS (\d+)$", proc.stdout, re.MULTILINE)
        if proc.returncode != 0 or not found or not requests:
            raise SystemExit(f"instructions: the run in {source} failed:\n{proc.stderr[-3000:]}")
        counts[source] = {"instructions_per_request": round(int(found[1]) / int(requests[1])),
                          "requests": int(requests[1])}
        log(f"{source}: {counts[source]['instructions_per_request']:,} instructions per request "
            f"({requests[1]} requests)")
    return counts


def instructions_child(args) -> dict:
    """Run under callgrind by `instructions`: warm up, then the counted requests."""
    import collections
    import os

    sys.path.insert(0, args.source[0])
    import smart_support

    if Path(smart_support.__file__).parent != Path(args.source[0]) / "smart_support":
        raise SystemExit(f"instructions: smart_support came from {smart_support.__file__}")
    app, bodies, tickets, post = app_in_process(args.model_dir)
    service = app.extensions["smart_support"]
    constant = service.triage(tickets[:1])
    service.triage = lambda batch: (constant[0] * len(batch), dict(constant[1]))
    for body in bodies:
        post(body)
    collections.deque(map(post, bodies), maxlen=0)
    print(f"REQUESTS {len(bodies)}", flush=True)
    os._exit(0)  # noqa: SLF001 - nothing after the count: no teardown under valgrind


def prediction_log(args) -> dict:
    from datetime import datetime, timezone

    from smart_support.storage import Storage

    storage = Storage(f"sqlite:///{tempfile.mkdtemp(prefix='experiments-')}/log.db")
    storage.migrate()
    row = {"ticket_id": "T-1", "subject": "billing", "description": "charged twice " * 20,
           "category": "Billing", "model_category": "Billing", "confidence": 0.9,
           "urgency": 0.5, "needs_review": False, "model": "transformer",
           "model_version": "experiment"}
    out = {}
    for per_transaction in (1, 12, 100):
        rows = [{"created_at": datetime.now(timezone.utc), **row}] * per_transaction
        transactions = max(20, 2_400 // per_transaction)
        rounds = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(transactions):
                storage.record_predictions(rows)
            rounds.append((time.process_time() - started) / (transactions * per_transaction))
        out[str(per_transaction)] = {"cpu_ms_per_row": round(statistics.median(rounds) * 1000, 4)}
        log(f"{per_transaction:>3} rows per transaction: "
            f"{out[str(per_transaction)]['cpu_ms_per_row']:.3f} ms of CPU per row")
    storage.engine.dispose()
    return out


def ticket_times(predictors: dict, tickets, rounds: int, clock=time.perf_counter) -> dict:
    """Seconds of one predict() call per ticket, by `clock`: for each predictor, a list per
    round of one time per ticket; the predictors take turns within each round."""
    times = {key: [] for key in predictors}
    for _ in range(rounds):
        for key, predictor in predictors.items():
            this_round = []
            for ticket in tickets:
                started = clock()
                predictor.predict([ticket])
                this_round.append(clock() - started)
            times[key].append(this_round)
    return times


def models(args) -> dict:
    """Median time of one ticket per predict() call for each model directory, int8, 1 thread,
    in each runtime (torch, as measured since session 2, and onnx, the served one)."""
    import torch

    from smart_support.inference.artifacts import CLASSIFIER_DIR, load_artifacts, read_json
    from smart_support.inference.predictor import Predictor

    torch.set_num_threads(1)
    tickets = test_tickets()
    predictors = {}
    for model_dir in args.model_dirs:
        for runtime in ("torch", "onnx"):
            predictor = Predictor(load_artifacts(model_dir, runtime), 256, 32, "int8", threads=1)
            predictor.warm_up()
            predictors[(model_dir, runtime)] = predictor
    rounds = {key: [statistics.median(times) * 1000 for times in by_round]
              for key, by_round in ticket_times(predictors, tickets, 3).items()}
    out = {}
    for (model_dir, runtime), medians in rounds.items():
        layers = read_json(Path(model_dir) / CLASSIFIER_DIR / "config.json")["num_hidden_layers"]
        row = out.setdefault(model_dir, {"layers": layers})
        row[runtime] = {"median_ms_by_round": [round(m, 2) for m in medians],
                        "median_ms": round(statistics.median(medians), 2)}
        log(f"{model_dir} ({layers} layers), {runtime} int8: median {row[runtime]['median_ms']} "
            f"ms per ticket (rounds {row[runtime]['median_ms_by_round']})")
    return out


def held_out_writer_tickets(artifacts, experiment: str) -> list[dict]:
    """The model's validation split: the tickets of the writers that training held out,
    rebuilt from its training file as training split it."""
    from dataclasses import asdict

    from smart_support.training.data import validation_tickets

    if not artifacts.metadata["hyperparameters"].get("validation_group_field"):
        raise SystemExit(f"{experiment}: the model has no held-out-writer validation split")
    path = ROOT / artifacts.metadata["training_data"]["path"]
    return [asdict(t) for t in validation_tickets(artifacts.metadata, path)]


def ensemble(args) -> dict:
    import numpy as np

    from smart_support.inference.artifacts import load_artifacts
    from smart_support.inference.baseline import BaselinePredictor
    from smart_support.inference.predictor import Predictor, Ticket, ticket_text
    from smart_support.training.ensemble import fit_blend
    from smart_support.training.metrics import category_metrics, urgency_metrics

    artifacts = load_artifacts(args.model_dir, "onnx")
    predictor = Predictor(artifacts, 256, 32, "int8", threads=1)
    baseline = BaselinePredictor(artifacts.baseline)
    labels = predictor.labels
    if baseline.labels != labels:
        raise SystemExit(f"baseline labels {baseline.labels} differ from the model's {labels}")
    validation = held_out_writer_tickets(artifacts, "ensemble")

    def probabilities(rows):
        tickets = [Ticket(r.get("subject") or "", r["description"]) for r in rows]
        answers, _ = predictor.predict(tickets)
        student = np.array([[a.scores[label] for label in labels] for a in answers])
        tfidf, _ = baseline.predict_texts([ticket_text(t.subject, t.description)
                                           for t in tickets])
        truth = np.array([labels.index(r["category"]) for r in rows])
        return student, tfidf, truth

    def macro_f1(probs, truth):
        return category_metrics([labels[i] for i in truth],
                                [labels[i] for i in probs.argmax(1)], labels)["macro_f1"]

    student, tfidf, truth = probabilities(validation)
    # the weight `smart-support ensemble` fits (a tie goes to the student)
    fitted = fit_blend(student, tfidf, truth,
                       [ticket_text(r.get("subject") or "", r["description"])
                        for r in validation], labels, 0.97)
    by_weight, chosen = fitted["validation_macro_f1_by_weight"], fitted["baseline_weight"]
    log(f"validation ({len(validation)} tickets), macro-F1 by the "
        f"baseline's weight: {by_weight}; chosen {chosen}")
    out = {"validation_tickets": len(validation), "validation_by_weight": by_weight,
           "chosen_weight": chosen, "files": {}}
    # Would urgency gain from the blend too? Validation only: Spearman and the > 0.8 alerts.
    tickets = [Ticket(r.get("subject") or "", r["description"]) for r in validation]
    student_urgency = np.array([a.urgency for a in predictor.predict(tickets)[0]])
    _, tfidf_urgency = baseline.predict_texts([ticket_text(t.subject, t.description)
                                               for t in tickets])
    true_urgency = [float(r["urgency"]) for r in validation]
    out["validation_urgency_by_weight"] = {}
    for weight in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        scores = urgency_metrics(true_urgency, (1 - weight) * student_urgency
                                 + weight * tfidf_urgency, 0.8)
        out["validation_urgency_by_weight"][str(weight)] = {
            "spearman": scores["spearman"], "alert_recall": scores["alerts"]["recall"],
            "alert_precision": scores["alerts"]["precision"]}
    log(f"validation urgency by the baseline's weight: {out['validation_urgency_by_weight']}")
    pooled = []
    files = sorted(ROOT.glob("data/test*.jsonl")) + [Path(args.outside_data)]
    for path in files:
        if not path.exists():
            log(f"{path}: absent, skipped")
            continue
        student, tfidf, truth = probabilities(workload.read_tickets(path))
        row = {"tickets": len(truth), "student": macro_f1(student, truth),
               "baseline": macro_f1(tfidf, truth),
               "ensemble": macro_f1((1 - chosen) * student + chosen * tfidf, truth)}
        name = "outside author" if path == Path(args.outside_data) else path.name
        out["files"][name] = row
        if name != "outside author":
            pooled.append((student, tfidf, truth))
        log(f"{name}: {row}")
    if pooled:
        student, tfidf, truth = (np.concatenate(part) for part in zip(*pooled))
        out["files"]["our held-out files pooled"] = {
            "tickets": len(truth), "student": macro_f1(student, truth),
            "baseline": macro_f1(tfidf, truth),
            "ensemble": macro_f1((1 - chosen) * student + chosen * tfidf, truth)}
        log(f"pooled: {out['files']['our held-out files pooled']}")

    def through_scikit_learn(texts):
        matrix = baseline.features.transform(texts)
        return baseline.classifier.predict_proba(matrix), baseline.regressor.predict(matrix)

    sides = {"student": lambda text, ticket: predictor.predict([ticket]),
             "baseline": lambda text, ticket: baseline.predict_texts([text]),
             "baseline through scikit-learn's transform": (
                 lambda text, ticket: through_scikit_learn([text]))}
    if baseline.per_text is None:
        log("the baseline's per-text path is off for this model: both baseline rows are "
            "scikit-learn's")
    tickets = test_tickets()
    cpu = {name: [] for name in sides}
    for ticket in tickets[:20] + tickets:
        text = ticket_text(ticket.subject, ticket.description)
        for name, side in sides.items():
            started = time.thread_time()
            side(text, ticket)
            cpu[name].append(time.thread_time() - started)
    cpu = {name: times[20:] for name, times in cpu.items()}  # the first 20 warm up
    out["cpu_ms_per_ticket_median"] = {k: round(1000 * statistics.median(v), 3)
                                       for k, v in cpu.items()}
    log(f"CPU per ticket, one per call (median over {len(tickets)} test tickets): "
        f"{out['cpu_ms_per_ticket_median']}")
    return out


def alerts(args) -> dict:
    import numpy as np

    from smart_support.config import Settings
    from smart_support.inference.artifacts import load_artifacts
    from smart_support.inference.predictor import Predictor, Ticket
    from smart_support.training.metrics import urgency_metrics

    artifacts = load_artifacts(args.model_dir, "onnx")
    predictor = Predictor(artifacts, 256, 32, "int8", threads=2)
    validation = held_out_writer_tickets(artifacts, "alerts")
    contract = Settings().alert_threshold  # the seed's: an alert when urgency is above 0.8

    def urgencies(rows):
        answers, _ = predictor.predict([Ticket(r.get("subject") or "", r["description"])
                                        for r in rows])
        return (np.array([a.urgency for a in answers]),
                np.array([float(r["urgency"]) for r in rows]))

    def scored(predicted, truth, threshold):
        alerts_ = urgency_metrics(truth, predicted, contract, raise_above=threshold)["alerts"]
        precision, recall = float(alerts_["precision"] or 0.0), float(alerts_["recall"] or 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
        return {"raised": alerts_["raised"], "deserved": alerts_["deserved"],
                "precision": precision, "recall": recall, "f1": round(f1, 4)}

    predicted, truth = urgencies(validation)
    thresholds = [round(0.50 + 0.02 * i, 2) for i in range(18)]
    by_threshold = {t: scored(predicted, truth, t) for t in thresholds}
    chosen = max(thresholds, key=lambda t: (by_threshold[t]["f1"], t))
    log(f"validation ({len(validation)} tickets): F1 by threshold "
        f"{ {t: v['f1'] for t, v in by_threshold.items()} }; chosen {chosen}")
    out = {"validation_by_threshold": by_threshold, "chosen_threshold": chosen, "files": {}}
    ours = [r for path in sorted(ROOT.glob("data/test*.jsonl"))
            for r in workload.read_tickets(path)]
    outside = Path(args.outside_data)
    for name, rows in (("our held-out files pooled", ours),
                       ("outside author", workload.read_tickets(outside)
                        if outside.exists() else [])):
        if not rows:
            continue
        predicted, truth = urgencies(rows)
        out["files"][name] = {"tickets": len(rows),
                              f"at {contract}": scored(predicted, truth, contract),
                              f"at {chosen}": scored(predicted, truth, chosen)}
        log(f"{name}: {out['files'][name]}")
    return out


def budgets(args) -> dict:
    """Accuracy and CPU per ticket of the served model at each token budget (module docstring)."""
    import numpy as np

    from smart_support.config import Settings
    from smart_support.inference.artifacts import load_artifacts
    from smart_support.inference.predictor import Predictor, Ticket, ticket_text
    from smart_support.training.evaluate import served_answers
    from smart_support.training.metrics import category_metrics, urgency_metrics

    artifacts = load_artifacts(args.model_dir, "onnx")
    labels = list(artifacts.labels)
    outside = Path(args.outside_data)
    sets = {"validation (held-out writer)": held_out_writer_tickets(artifacts, "budgets"),
            "our held-out files pooled": [r for path in sorted(ROOT.glob("data/test*.jsonl"))
                                          for r in workload.read_tickets(path)],
            "outside author": workload.read_tickets(outside) if outside.exists() else []}
    out = {"budgets": {}}
    for budget in args.budgets:
        settings = Settings.from_env(model_dir=Path(args.model_dir), runtime="onnx",
                                     quantize="int8", max_tokens=budget)
        row = out["budgets"][str(budget)] = {"accuracy": {}}
        for name, rows in sets.items():
            if not rows:
                continue
            tickets = [Ticket(r.get("subject") or "", r["description"]) for r in rows]
            served = served_answers(tickets, artifacts, settings)
            truth = [r["category"] for r in rows]
            row["accuracy"][name] = {
                "tickets": len(rows),
                "macro_f1": category_metrics(truth, [d.category for d in served.decisions],
                                             labels)["macro_f1"],
                "urgency_spearman": urgency_metrics(
                    [float(r["urgency"]) for r in rows], [p.urgency for p in served.predictions],
                    settings.alert_threshold)["spearman"]}
        log(f"budget {budget}: {row['accuracy']}")

    tickets = test_tickets()
    predictors = {budget: Predictor(artifacts, budget, 1, "int8", threads=1)
                  for budget in args.budgets}
    # CPU, not wall time; the first round warms up and is not kept
    cpu = {budget: by_round[1:] for budget, by_round in
           ticket_times(predictors, tickets, args.rounds + 1, time.thread_time).items()}
    for budget, predictor in predictors.items():
        per_ticket = np.array(cpu[budget]).mean(axis=0) * 1000  # each ticket's mean over rounds
        tokens = [len(ids) for ids in predictor.budget.encode(
            [ticket_text(t.subject, t.description) for t in tickets])]
        out["budgets"][str(budget)]["cpu_ms_per_ticket"] = {
            "median": round(float(np.median(per_ticket)), 3),
            "mean": round(float(per_ticket.mean()), 3),
            "p95": round(float(np.percentile(per_ticket, 95)), 3),
            "p99": round(float(np.percentile(per_ticket, 99)), 3),
            "mean_by_round": [round(1000 * statistics.mean(r), 3) for r in cpu[budget]]}
        out["budgets"][str(budget)]["tokens_per_ticket"] = {
            "mean": round(statistics.mean(tokens), 1), "max": max(tokens),
            "at_budget": sum(1 for n in tokens if n >= budget)}
        log(f"budget {budget}: CPU per ticket {out['budgets'][str(budget)]['cpu_ms_per_ticket']}, "
            f"tokens {out['budgets'][str(budget)]['tokens_per_ticket']}")

    if shutil.which("wrk") is None:
        log("wrk is not installed: the HTTP part is skipped (apt-get install wrk)")
        return out
    runs = interleaved_rounds(args, {f"token budget {budget}": {
        "SMART_SUPPORT_MAX_TOKENS": str(budget)} for budget in args.budgets})
    for budget, results in zip(args.budgets, runs.values()):
        out["budgets"][str(budget)]["http_16_connections"] = wrk_summary(results)
        log(f"budget {budget}, HTTP at 16 connections: "
            f"{out['budgets'][str(budget)]['http_16_connections']}")
    return out


def main() -> None:
    # no abbreviations: `--out` would be taken for --outside-data without a word
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("experiment", choices=["batching", "layouts", "overhead", "floor",
                                               "preemption", "in-app", "lean",
                                               "interpreters", "prediction-log", "models",
                                               "instructions", "instructions-child",
                                               "ensemble", "alerts", "budgets"])
    parser.add_argument("model_dirs", nargs="*", help="models: the model directories to time")
    parser.add_argument("--model-dir", default="models",
                        help="batching, layouts, preemption, in-app, lean, instructions, "
                             "ensemble, alerts, budgets: the model")
    parser.add_argument("--outside-data",
                        default=str(ROOT.parent / "shared/eval/dev_tickets.jsonl"),
                        help="ensemble, alerts, budgets: the outside author's file, reported "
                             "only")
    parser.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")],
                        default=[256, 192, 160, 128],
                        help="budgets: the token budgets to compare, comma-separated")
    parser.add_argument("--duration", type=int, default=15,
                        help="layouts, overhead, floor, preemption, lean, interpreters, "
                             "budgets: seconds per level")
    parser.add_argument("--rounds", type=int, default=3,
                        help="overhead, floor, preemption, in-app, lean, interpreters, "
                             "budgets: interleaved rounds")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=None,
                        help="overhead: comma-separated variant names (default: all of "
                             f"{', '.join(OVERHEAD_VARIANTS)})")
    parser.add_argument("--venv", action="append",
                        help="interpreters: another virtual environment to set against the "
                             "one running this script (repeatable)")
    parser.add_argument("--source", action="append",
                        help="instructions: a checkout whose app to count (repeatable; "
                             "default: this one)")
    args = parser.parse_args()
    unknown = set(args.variants or ()) - set(OVERHEAD_VARIANTS)
    if unknown:
        parser.error(f"--variants: unknown {sorted(unknown)}; known: {list(OVERHEAD_VARIANTS)}")
    if args.experiment == "models" and not args.model_dirs:
        parser.error("models: name at least one model directory")
    figures = {"batching": batching, "layouts": layouts, "overhead": overhead, "floor": floor,
               "preemption": preemption, "in-app": in_app, "lean": lean,
               "interpreters": interpreters,
               "prediction-log": prediction_log,
               "models": models, "instructions": instructions,
               "instructions-child": instructions_child,
               "ensemble": ensemble, "alerts": alerts,
               "budgets": budgets}[args.experiment](args)
    out = BENCH / "results" / f"experiments-{args.experiment}.json"
    out.write_text(json.dumps({"experiment": args.experiment, "figures": figures,
                               "machine": __import__("sysinfo").machine()}, indent=2))
    log(f"written {out}")


if __name__ == "__main__":
    main()
