"""Smart-Support under load and faults, on loopback: gunicorn as deployed, nginx in front from
deploy/nginx.conf, wrk for load. `make faults` runs it; see bench/faults/README.md.

    .venv/bin/python bench/faults/run.py            # full run, about 8 minutes on 2 cores
    .venv/bin/python bench/faults/run.py --quick    # smoke run, about 2 minutes
    .venv/bin/python bench/faults/run.py --only kill_worker

Scenarios (each records requests, non-2xx, socket errors, p50/p99, recovery time, RSS):
  sustained      60 s at 64 connections through nginx: zero errors expected
  kill_worker    SIGKILL one gunicorn worker under load: only its in-flight request may fail;
                 time until the replacement worker answers /ready 200
  memory         50,000 requests: total RSS (master + workers) growth under 10%
  bad_model      model directory missing / a file removed / label_encoder.pkl garbage:
                 /ready 503 naming the file, /health 200, /classify 503 in the error shape
  runtime_fault  transformer raising (or slow) at run time, via bench/faults/faulty_wsgi.py:
                 200 answers from the baseline, breaker open on /ready, no 5xx
  body_limit     9 MiB body: nginx's 413 in the JSON error shape; 8,000,000 bytes: the app's answer

Writes bench/faults/results/{report.md, results.json} and logs under bench/faults/results/logs/.
Exit status 0 only when every expectation held; 1 when one failed; 2 when it could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
import stack  # noqa: E402
from stack import CHILDREN, ROOT, Gunicorn, Nginx, StackError, http, json_or_none, log  # noqa: E402

FAULTS = Path(__file__).resolve().parent
SCENARIOS = ("sustained", "kill_worker", "memory", "bad_model", "runtime_fault", "body_limit")
PROFILES = {
    "full": {"sustained_s": 60, "sustained_connections": 64, "kill_s": 30, "kill_at_s": 5,
             "kill_connections": 16, "memory_requests": 50_000, "memory_warmup_requests": 2_000,
             "memory_connections": 16, "warmup_s": 5, "fault_load_s": 10},
    "quick": {"sustained_s": 10, "sustained_connections": 64, "kill_s": 12, "kill_at_s": 3,
              "kill_connections": 16, "memory_requests": 3_000, "memory_warmup_requests": 300,
              "memory_connections": 16, "warmup_s": 2, "fault_load_s": 4},
}
RSS_GROWTH_LIMIT = 0.10
KILL_ALLOWED_FAILURES = 1   # a sync worker handles one request at a time: its in-flight one
BREAKER_THRESHOLD = 3       # the service's default SMART_SUPPORT_BREAKER_FAILURE_THRESHOLD
RAISE_AFTER_CALLS = 5       # runtime_fault/raise: each worker's first calls still work
NGINX_LIMIT_BYTES = 9 * 1024 * 1024
PASS_BYTES = 8_000_000


# --------------------------------------------------------------------------------------------
# bookkeeping

class Scenario:
    """Figures and expectations of one scenario; printed as it goes, saved in results.json."""

    def __init__(self, name: str, title: str):
        self.name, self.title = name, title
        self.figures: dict = {}
        self.checks: list[dict] = []
        self.notes: list[str] = []
        self.started = time.monotonic()

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append({"what": what, "ok": bool(ok), "detail": detail})
        log(f"    [{'PASS' if ok else 'FAIL'}] {what}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"    note: {text}")

    def as_dict(self) -> dict:
        return {"title": self.title, "ok": all(c["ok"] for c in self.checks) and bool(self.checks),
                "seconds": round(time.monotonic() - self.started, 1), "checks": self.checks,
                "notes": self.notes, "figures": self.figures}


def wrk_line(r: dict) -> str:
    return (f"{r['requests']} requests in {r['duration_s']:.1f} s ({r['rps']:.1f} req/s), "
            f"non-2xx {r['non2xx']}, socket errors {r['socket_errors_total']}, "
            f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, degraded {r['degraded']}")


class CpuWindow:
    """Cores used by the processes of this run and by everything else during a load window,
    so a run disturbed by a test suite or a training job shows it. Our processes are sampled
    every 0.5 s, so one that dies meanwhile (the killed worker) still counts up to its end."""

    def __init__(self, pids):
        self.pids = pids
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stopped = threading.Event()

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as handle:
            f = [int(x) for x in handle.readline().split()[1:]]
        return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _reaped() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once reaped
        return usage.ru_utime + usage.ru_stime

    def _sample(self) -> None:
        for pid in self.pids():
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
                fields = text[text.rindex(")") + 2:].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                continue
            self.first.setdefault(pid, cpu if not self.started else 0.0)
            self.last[pid] = cpu

    def _loop(self) -> None:
        while not self.stopped.wait(0.5):
            self._sample()

    def __enter__(self):
        self.started = False
        self._sample()
        self.started = True  # processes first seen later were born inside the window
        self.t0, self.busy0, self.reaped0 = time.monotonic(), self._busy(), self._reaped()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        self._sample()
        elapsed = max(1e-9, time.monotonic() - self.t0)
        busy = self._busy() - self.busy0
        ours = (sum(self.last[p] - self.first[p] for p in self.last)
                + self._reaped() - self.reaped0)
        self.result = {"busy_cores": round(busy / elapsed, 2), "our_cores": round(ours / elapsed, 2),
                       "other_cores": round(max(0.0, busy - ours) / elapsed, 2)}
        return False


def stack_pids(g: Gunicorn, n: Nginx | None):
    def pids():
        out = g.pids()
        if n is not None and n.proc is not None:
            out += [n.proc.pid] + stack.children_of(n.proc.pid)
        return out
    return pids


def loaded_wrk(scenario: Scenario, key: str, g: Gunicorn, n: Nginx, url: str, bodies: Path,
               connections: int, logs: Path, **kwargs) -> dict:
    with CpuWindow(stack_pids(g, n)) as cpu:
        r = stack.run_wrk(url, bodies, connections, logs / f"wrk-{scenario.name}-{key}.txt",
                          **kwargs)
    r["cpu"] = cpu.result
    if cpu.result["other_cores"] > 0.3:
        scenario.note(f"other processes used {cpu.result['other_cores']:.2f} cores during "
                      f"'{key}': latency and throughput figures are lower than on a quiet machine")
    return r


def warm_up(g: Gunicorn, n: Nginx, bodies: Path, seconds: float, logs: Path, name: str) -> None:
    stack.run_wrk(n.base + "/classify", bodies, 2, logs / f"wrk-{name}-warmup.txt",
                  duration=seconds)


# --------------------------------------------------------------------------------------------
# a. sustained load

def scenario_sustained(args, profile, bodies: Path, logs: Path) -> Scenario:
    seconds = args.duration or profile["sustained_s"]
    conns = profile["sustained_connections"]
    s = Scenario("sustained", f"Sustained load: {seconds} s at {conns} connections through nginx")
    log(f"\n== a. {s.title} ==")
    with Gunicorn("sustained", args.model_dir, logs) as g, Nginx("sustained", g.port, logs) as n:
        warm_up(g, n, bodies, profile["warmup_s"], logs, s.name)
        workers = g.workers()
        rss_before = g.rss()
        r = loaded_wrk(s, "load", g, n, n.base + "/classify", bodies, conns, logs,
                       duration=seconds)
        rss_after = g.rss()
        s.figures.update({"wrk": r, "rss_before": rss_before, "rss_after": rss_after,
                          "workers_restarted": g.workers() != workers})
        log(f"    {wrk_line(r)}")
        log(f"    RSS master+workers {rss_before['total_mib']:.0f} -> "
            f"{rss_after['total_mib']:.0f} MiB; CPU: ours {r['cpu']['our_cores']:.2f}, "
            f"others {r['cpu']['other_cores']:.2f} cores")
        s.check("zero non-2xx answers", r["non2xx"] == 0, f"{r['non2xx']} ({r['by_status']})")
        s.check("zero socket errors", r["socket_errors_total"] == 0, json.dumps(r["socket_errors"]))
        s.check("no worker restarted", g.workers() == workers,
                f"{workers} -> {g.workers()}")
        if r["degraded"]:
            s.note(f"{r['degraded']} answers came from the baseline (breaker open: a forward "
                   "pass took over 0.5 s under this load)")
    return s


# --------------------------------------------------------------------------------------------
# b. SIGKILL a worker under load

def model_loaded_after(log_path: Path, offset: int) -> dict | None:
    """The first 'model ... loaded' JSON log line written after `offset` (the new worker's)."""
    try:
        with open(log_path, errors="replace") as handle:
            handle.seek(offset)
            text = handle.read()
    except OSError:
        return None
    for line in text.splitlines():
        if '"message": "model ' in line and " loaded from " in line:
            entry = json_or_none(line.encode())
            if entry and entry.get("time"):
                when = datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=timezone.utc).timestamp()
                took = re.search(r" in ([0-9.]+) s", entry.get("message", ""))
                return {"at": when, "load_s": float(took.group(1)) if took else None}
    return None


def scenario_kill_worker(args, profile, bodies: Path, logs: Path) -> Scenario:
    seconds, kill_at = profile["kill_s"], profile["kill_at_s"]
    conns = profile["kill_connections"]
    s = Scenario("kill_worker", f"SIGKILL one gunicorn worker at {kill_at} s of {seconds} s at "
                                f"{conns} connections through nginx")
    log(f"\n== b. {s.title} ==")
    with Gunicorn("kill", args.model_dir, logs) as g, Nginx("kill", g.port, logs) as n:
        warm_up(g, n, bodies, profile["warmup_s"], logs, s.name)
        before = g.workers()
        victim = before[0]
        nginx_err = logs / "nginx-kill-error.log"
        nginx_err_offset = nginx_err.stat().st_size if nginx_err.exists() else 0

        def during(proc):
            time.sleep(kill_at)
            offset = g.log_path.stat().st_size
            kill_wall, t0 = time.time(), time.monotonic()
            os.kill(victim, signal.SIGKILL)
            out = {"victim": victim, "kill_wall": kill_wall}
            new_pid = None
            while time.monotonic() - t0 < 60 and new_pid is None:
                fresh = [p for p in g.workers() if p not in before]
                if fresh:
                    new_pid = fresh[0]
                    out["replaced_s"] = round(time.monotonic() - t0, 3)
                else:
                    time.sleep(0.02)
            out["new_worker"] = new_pid
            if new_pid is None:
                return out
            # /ready straight to gunicorn, each probe traced to the worker that answered it,
            # until the new worker itself answers 200.
            probes = []
            while time.monotonic() - t0 < 120:
                try:
                    pid, status, body = g.ready_probe(timeout=15)
                except OSError as exc:
                    probes.append({"t": round(time.monotonic() - t0, 3), "error": str(exc)})
                    time.sleep(0.1)
                    continue
                t = round(time.monotonic() - t0, 3)
                probes.append({"t": t, "pid": pid, "status": status})
                if pid == new_pid and status == 200:
                    out["ready_from_new_worker_s"] = t
                    out["ready_body"] = body
                    break
                time.sleep(0.05)
            out["ready_probes"] = len(probes)
            out["ready_non200_probes"] = [p for p in probes if p.get("status") != 200]
            loaded = model_loaded_after(g.log_path, offset)
            if loaded:
                out["model_loaded_s"] = round(loaded["at"] - kill_wall, 3)
                out["model_load_took_s"] = loaded["load_s"]
            return out

        r = loaded_wrk(s, "load", g, n, n.base + "/classify", bodies, conns, logs,
                       duration=seconds, during=during)
        d = r.pop("during")
        failed = r["non2xx"] + r["socket_errors_total"]
        try:
            with open(nginx_err, errors="replace") as handle:
                handle.seek(nginx_err_offset)
                upstream_errors = [l.strip() for l in handle if "upstream" in l][:10]
        except OSError:
            upstream_errors = []
        # Answers per second around the kill (wrk's clock is whole Unix seconds).
        kill_sec = int(d["kill_wall"])
        per_sec = {int(k): v for k, v in r.pop("per_second").items()}
        secs = sorted(per_sec)
        first, last = (secs[0], secs[-1]) if secs else (kill_sec, kill_sec)
        before_rate = [per_sec[k][0] for k in secs if first < k < kill_sec]
        ready_s = d.get("ready_from_new_worker_s")
        after_from = kill_sec + int(ready_s) + 1 if ready_s is not None else None
        after_rate = ([per_sec[k][0] for k in secs if after_from and after_from <= k < last]
                      if after_from else [])
        timeline = [{"t": k - kill_sec, "answers": per_sec[k][0], "failures": per_sec[k][1]}
                    for k in secs]
        rate_before = sum(before_rate) / len(before_rate) if before_rate else None
        rate_after = sum(after_rate) / len(after_rate) if after_rate else None
        s.figures.update({"wrk": r, "failed_requests": failed, "kill": d,
                          "answers_per_second_before": rate_before,
                          "answers_per_second_after_recovery": rate_after,
                          "timeline": timeline, "nginx_upstream_errors": upstream_errors,
                          "workers_before": before, "workers_after": g.workers(),
                          "rss_after": g.rss()})
        log(f"    {wrk_line(r)}")
        log(f"    killed worker {victim}; replacement {d.get('new_worker')} forked after "
            f"{d.get('replaced_s')} s, its model loaded after {d.get('model_loaded_s')} s "
            f"(load itself {d.get('model_load_took_s')} s), it answered /ready 200 after "
            f"{ready_s} s ({d.get('ready_probes')} traced probes)")
        log(f"    answers/s before the kill {rate_before and round(rate_before, 1)}, after "
            f"recovery {rate_after and round(rate_after, 1)}; failures by second from the kill: "
            + ", ".join(f"{x['t']:+d}s:{x['failures']}" for x in timeline if x["failures"]))
        for line in upstream_errors:
            log(f"    nginx: {line[:200]}")
        s.check(f"failed requests <= {KILL_ALLOWED_FAILURES} (the killed sync worker's "
                "in-flight request)", failed <= KILL_ALLOWED_FAILURES,
                f"{failed} (non-2xx {r['non2xx']} {r['by_status']}, socket errors "
                f"{r['socket_errors_total']})")
        s.check("gunicorn forked a replacement worker", d.get("new_worker") is not None,
                f"after {d.get('replaced_s')} s")
        s.check("the replacement answers /ready 200 by itself (within 120 s)",
                ready_s is not None, f"after {ready_s} s")
        non200 = d.get("ready_non200_probes") or []
        s.check("/ready stayed 200 throughout (the surviving worker kept answering)",
                not non200, f"{len(non200)} non-200 probes" if non200 else "")
        if rate_before and rate_after is not None:
            s.check("throughput back after recovery (>= 80% of before the kill)",
                    rate_after >= 0.8 * rate_before,
                    f"{rate_after:.1f} vs {rate_before:.1f} answers/s")
        elif ready_s is not None:
            s.note("the run ended too soon after recovery to compare throughput")
    return s


# --------------------------------------------------------------------------------------------
# c. memory over many requests

class RssSampler(threading.Thread):
    def __init__(self, g: Gunicorn, interval: float = 2.0):
        super().__init__(daemon=True)
        self.g, self.interval = g, interval
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append((round(time.monotonic() - self.t0, 1), self.g.rss()["total_mib"]))


def scenario_memory(args, profile, bodies: Path, logs: Path) -> Scenario:
    total, warm = profile["memory_requests"], profile["memory_warmup_requests"]
    conns = profile["memory_connections"]
    s = Scenario("memory", f"Memory: {total:,} requests at {conns} connections through nginx "
                           f"(after {warm:,} warm-up requests)")
    log(f"\n== c. {s.title} ==")
    with Gunicorn("memory", args.model_dir, logs) as g, Nginx("memory", g.port, logs) as n:
        stack.run_wrk(n.base + "/classify", bodies, conns, logs / "wrk-memory-warmup.txt",
                      max_requests=warm)
        time.sleep(1)
        workers = g.workers()
        before = g.rss()
        sampler = RssSampler(g)
        sampler.start()
        try:
            r = loaded_wrk(s, "load", g, n, n.base + "/classify", bodies, conns, logs,
                           max_requests=total)
        finally:
            sampler.stopped.set()
            sampler.join()
        r.pop("per_second", None)
        time.sleep(1)
        after = g.rss()
        growth = (after["total_mib"] - before["total_mib"]) / before["total_mib"]
        peak = max([v for _, v in sampler.samples] + [after["total_mib"]])
        s.figures.update({"wrk": r, "rss_before": before, "rss_after": after,
                          "rss_growth": round(growth, 4), "rss_peak_total_mib": peak,
                          "rss_samples": sampler.samples,
                          "workers_restarted": g.workers() != workers})
        log(f"    {wrk_line(r)}")
        log(f"    RSS master+workers: {before['total_mib']:.1f} MiB before, "
            f"{after['total_mib']:.1f} MiB after ({growth:+.2%}), peak sampled {peak:.1f} MiB; "
            f"per worker {before['workers_mib']} -> {after['workers_mib']}")
        s.check(f"answered at least {total:,} requests", r["requests"] >= total,
                str(r["requests"]))
        s.check(f"RSS growth < {RSS_GROWTH_LIMIT:.0%}", growth < RSS_GROWTH_LIMIT,
                f"{growth:+.2%} ({before['total_mib']:.1f} -> {after['total_mib']:.1f} MiB)")
        s.check("zero errors", r["non2xx"] + r["socket_errors_total"] == 0,
                f"non-2xx {r['non2xx']}, socket errors {r['socket_errors_total']}")
        s.check("same workers throughout (a restart would hide growth)",
                g.workers() == workers, f"{workers} -> {g.workers()}")
    return s


# --------------------------------------------------------------------------------------------
# d. bad model directory

def ticket_body(bodies: Path) -> bytes:
    return bodies.read_text().splitlines()[0].encode()


def bad_model_case(s: Scenario, label: str, model_dir: Path, expected_file: str, logs: Path,
                   body: bytes) -> dict:
    log(f"  -- {label} (expect /ready to name {expected_file!r})")
    out: dict = {"model_dir": str(model_dir), "expected_file": expected_file}
    with Gunicorn(f"bad-model-{re.sub(r'[^a-z0-9]+', '-', label.lower()).strip('-')}",
                  model_dir, logs, expect_ready=False) as g:
        readies = [http("GET", g.base + "/ready") for _ in range(4)]  # both workers, likely
        health = http("GET", g.base + "/health")
        classify = http("POST", g.base + "/classify", body)
    ready_json = [json_or_none(b) for _, _, b in readies]
    cj = json_or_none(classify[2]) or {}
    out.update({"ready_statuses": [st for st, _, _ in readies], "ready_body": ready_json[0],
                "health_status": health[0], "classify_status": classify[0], "classify_body": cj})
    log(f"    /ready {out['ready_statuses']} {json.dumps(ready_json[0])}")
    log(f"    /health {health[0]}; POST /classify {classify[0]} {json.dumps(cj)}")
    s.check(f"{label}: /ready 503 naming {expected_file}",
            all(st == 503 for st, _, _ in readies) and all(
                j and j.get("file") == expected_file and expected_file in (j.get("reason") or "")
                for j in ready_json),
            f"file={ready_json[0] and ready_json[0].get('file')!r}")
    s.check(f"{label}: /health 200", health[0] == 200, str(health[0]))
    shape = (classify[0] == 503 and cj.get("code") == 503 and isinstance(cj.get("status"), str)
             and isinstance(cj.get("message"), str))
    s.check(f"{label}: POST /classify 503 in the error shape, message naming the file",
            shape and expected_file in cj.get("message", ""),
            f"{classify[0]} {cj.get('message', '')[:120]!r}")
    return out


def scenario_bad_model(args, profile, bodies: Path, logs: Path) -> Scenario:
    s = Scenario("bad_model", "Model directory missing, a file removed, label_encoder.pkl garbage")
    log(f"\n== d. {s.title} ==")
    body = ticket_body(bodies)
    source = Path(args.model_dir)
    with tempfile.TemporaryDirectory(prefix="faults-models-") as tmp:
        missing = Path(tmp) / "no-such-models"
        s.figures["missing_dir"] = bad_model_case(s, "directory missing", missing,
                                                  missing.name, logs, body)
        copy = Path(tmp) / "models-copy"
        shutil.copytree(source, copy)
        encoder = copy / "label_encoder.pkl"
        encoder.write_bytes(b"this is not a pickle \x00\xff" * 64)
        s.figures["garbage_label_encoder"] = bad_model_case(
            s, "label_encoder.pkl overwritten with garbage", copy, "label_encoder.pkl", logs, body)
        shutil.copy2(source / "label_encoder.pkl", encoder)
        weights = next((copy / "classifier" / w for w in ("model.safetensors", "pytorch_model.bin")
                        if (copy / "classifier" / w).exists()), None)
        if weights is None:
            s.check("the model copy has classifier weights to remove", False, str(copy))
        else:
            weights.unlink()
            s.figures["weights_removed"] = bad_model_case(
                s, f"classifier/{weights.name} removed", copy, "classifier/model.safetensors",
                logs, body)
    return s


# --------------------------------------------------------------------------------------------
# e. transformer failing at run time

def classify_until_open(g: Gunicorn, n: Nginx, bodies: list[bytes], per_worker: int,
                        limit: int = 300) -> list[dict]:
    """POST /classify through nginx from 2 clients until every worker answered `per_worker`
    times (each answer says which worker gave it: X-Faults-Worker)."""
    answers, lock, counter = [], threading.Lock(), iter(range(limit))

    def client():
        while True:
            with lock:
                workers = set(g.workers())
                seen = {w: sum(1 for a in answers if a["worker"] == w) for w in workers}
                if workers and all(v >= per_worker for v in seen.values()):
                    return
                i = next(counter, None)
            if i is None:
                return
            started = time.perf_counter()
            try:
                status, headers, body = http("POST", n.base + "/classify", bodies[i % len(bodies)],
                                             timeout=30)
            except OSError as exc:
                status, headers, body = 0, {}, str(exc).encode()
            j = json_or_none(body) or {}
            with lock:
                answers.append({"i": i, "status": status,
                                "worker": int(headers.get("X-Faults-Worker", 0) or 0),
                                "predict_calls": int(headers.get("X-Faults-Predict-Calls", 0) or 0),
                                "model": j.get("model"), "degraded": j.get("degraded"),
                                "ms": round((time.perf_counter() - started) * 1000, 1)})

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(client) for _ in range(2)]:
            f.result()
    return sorted(answers, key=lambda a: a["i"])


def ready_per_worker(g: Gunicorn, n: Nginx, tries: int = 60) -> dict:
    """/ready through nginx until every worker has answered once: {pid: (status, json)}.

    The probes go out as many at a time as there are workers: sent one at a time, every one
    can be taken by the same idle worker (session 8: 60 in a row)."""
    out = {}
    width = max(1, len(g.workers()))
    with ThreadPoolExecutor(width) as pool:
        for _ in range(tries):
            for status, headers, body in pool.map(lambda _: http("GET", n.base + "/ready"),
                                                   range(width)):
                out[int(headers.get("X-Faults-Worker", 0) or 0)] = (status, json_or_none(body))
            if set(g.workers()) <= set(out):
                break
    return out


def runtime_case(s: Scenario, args, profile, mode: str, bodies_path: Path, logs: Path) -> dict:
    after = RAISE_AFTER_CALLS if mode == "raise" else 0
    env = {"PYTHONPATH": str(stack.FAULTS), "FAULTS_MODE": mode, "FAULTS_AFTER_CALLS": after,
           "FAULTS_SLOW_SECONDS": "0.6"}
    what = (f"predict raises RuntimeError after each worker's first {after} calls"
            if mode == "raise" else "predict sleeps 0.6 s (budget 0.5 s) before answering")
    log(f"  -- {mode}: {what}")
    bodies = [b.encode() for b in bodies_path.read_text().splitlines() if b]
    out: dict = {"mode": mode, "fault": what}
    with Gunicorn(f"fault-{mode}", args.model_dir, logs, app="faulty_wsgi:app",
                  extra_env=env) as g, Nginx(f"fault-{mode}", g.port, logs) as n:
        before = ready_per_worker(g, n)
        out["ready_before"] = {str(k): v[1].get("breaker", {}).get("state") if v[1] else None
                               for k, v in before.items()}
        answers = classify_until_open(g, n, bodies, after + BREAKER_THRESHOLD + 3)
        ready = ready_per_worker(g, n)
        load = loaded_wrk(s, f"{mode}-load", g, n, n.base + "/classify", bodies_path, 8, logs,
                          duration=profile["fault_load_s"])
        load.pop("per_second", None)
        ready_end = ready_per_worker(g, n)
        workers = g.workers()
    per_worker = {}
    for w in sorted({a["worker"] for a in answers}):
        mine = [a for a in answers if a["worker"] == w]
        transformer = [a for a in mine if a["model"] == "transformer"]
        per_worker[str(w)] = {
            "answers": len(mine), "transformer_answers": len(transformer),
            "first_baseline_at": next((k + 1 for k, a in enumerate(mine)
                                       if a["model"] == "baseline"), None),
            "transformer_ms": [a["ms"] for a in transformer],
            "baseline_ms_median": sorted(a["ms"] for a in mine if a["model"] == "baseline")[
                len([a for a in mine if a["model"] == "baseline"]) // 2]
            if any(a["model"] == "baseline" for a in mine) else None,
            "predict_calls_seen": max(a["predict_calls"] for a in mine)}
    statuses = sorted({a["status"] for a in answers})
    ready_show = {str(k): {"status": st, "degraded": (j or {}).get("degraded"),
                           "breaker": (j or {}).get("breaker")} for k, (st, j) in ready.items()}
    out.update({"answers": len(answers), "statuses": statuses, "per_worker": per_worker,
                "ready": ready_show,
                "ready_after_load": {str(k): {"status": st,
                                              "state": ((j or {}).get("breaker") or {}).get("state")}
                                     for k, (st, j) in ready_end.items()},
                "wrk": load, "workers": workers})
    log(f"    {len(answers)} sequential answers, statuses {statuses}; per worker: "
        + "; ".join(f"{w}: {p['transformer_answers']} transformer then baseline from answer "
                    f"{p['first_baseline_at']}, predict called {p['predict_calls_seen']} times"
                    for w, p in per_worker.items()))
    for w, v in ready_show.items():
        b = v["breaker"] or {}
        log(f"    /ready from worker {w}: {v['status']}, degraded {v['degraded']}, breaker "
            f"{b.get('state')} ({b.get('consecutive_failures')} failures, last "
            f"{b.get('last_failure')!r}, retry in {b.get('retry_in_seconds')} s)")
    log(f"    under load: {wrk_line(load)}")
    expected_transformer = after if mode == "raise" else BREAKER_THRESHOLD
    s.check(f"{mode}: every answer HTTP 200 (sequential and under load), no 5xx",
            statuses == [200] and load["non2xx"] == 0 and load["socket_errors_total"] == 0,
            f"statuses {statuses}, load non-2xx {load['non2xx']} {load['by_status']}, "
            f"socket errors {load['socket_errors_total']}")
    s.check(f"{mode}: answers after the failures are \"model\": \"baseline\", \"degraded\": true",
            all(a["model"] == "baseline" and a["degraded"] is True
                for w in per_worker for a in [x for x in answers if str(x["worker"]) == w]
                [expected_transformer:]) and load["degraded"] == load["requests"],
            f"under load {load['degraded']} of {load['requests']} degraded")
    if mode == "raise":
        s.check(f"raise: each worker answered with the transformer exactly its first {after} "
                f"times, and the transformer was called {after + BREAKER_THRESHOLD} times "
                "(the breaker stops calling it after 3 failures)",
                all(p["transformer_answers"] == after
                    and p["predict_calls_seen"] == after + BREAKER_THRESHOLD
                    for p in per_worker.values()) and len(per_worker) == len(workers),
                json.dumps({w: [p["transformer_answers"], p["predict_calls_seen"]]
                            for w, p in per_worker.items()}))
    else:
        s.check(f"slow: the breaker opened after {BREAKER_THRESHOLD} slow calls on each worker "
                "(3 slow transformer answers, then baseline)",
                all(p["transformer_answers"] == BREAKER_THRESHOLD
                    and all(ms >= 600 for ms in p["transformer_ms"])
                    for p in per_worker.values()) and len(per_worker) == len(workers),
                json.dumps({w: p["transformer_ms"] for w, p in per_worker.items()}))
    expect_failure = "error: RuntimeError" if mode == "raise" else "slow:"
    s.check(f"{mode}: /ready 200 on every worker with degraded true and the breaker open "
            f"(last failure {expect_failure!r}...)",
            set(workers) <= {int(k) for k in ready_show} and all(
                v["status"] == 200 and v["degraded"] is True and v["breaker"]
                and v["breaker"].get("state") == "open"
                and str(v["breaker"].get("last_failure", "")).startswith(expect_failure)
                for v in ready_show.values()),
            json.dumps({w: (v["breaker"] or {}).get("state") for w, v in ready_show.items()}))
    return out


def scenario_runtime_fault(args, profile, bodies: Path, logs: Path) -> Scenario:
    s = Scenario("runtime_fault", "Transformer failing at run time (bench/faults/faulty_wsgi.py "
                                  "under gunicorn.conf.py, nginx in front)")
    log(f"\n== e. {s.title} ==")
    for mode in ("raise", "slow"):
        try:
            s.figures[mode] = runtime_case(s, args, profile, mode, bodies, logs)
        except StackError as exc:
            s.check(f"{mode}: the faulty server ran", False, str(exc).splitlines()[0])
            log(str(exc))
    return s


# --------------------------------------------------------------------------------------------
# f. body-size limit through nginx

def raw_post(port: int, path: str, body: bytes, timeout: float = 120) -> dict:
    """POST with an exact Content-Length over a raw socket: nginx may answer before the body is
    all sent (413), which http.client reports as a broken pipe instead of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent_all = True
    started = time.perf_counter()
    try:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close"
                      "\r\n\r\n").encode())
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            sent_all = False
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except ConnectionResetError:
            pass
    finally:
        sock.close()
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (l.partition(":") for l in lines[1:] if ":" in l)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        payload = dechunk(payload)
    return {"status": status, "headers": headers, "body": payload.decode(errors="replace"),
            "json": json_or_none(payload), "body_fully_sent": sent_all,
            "seconds": round(time.perf_counter() - started, 3)}


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def json_body_of_size(size: int) -> bytes:
    """A valid /classify JSON body of exactly `size` bytes (a huge description)."""
    start = b'{"subject": "Invoice export fails", "description": "'
    end = b'"}'
    unit = b"The invoice PDF export fails with an error every time I try it. "
    fill = size - len(start) - len(end)
    return start + (unit * (fill // len(unit) + 1))[:fill] + end


def upstream_posts(g: Gunicorn) -> int:
    """POSTs to /classify that reached gunicorn (its JSON access log)."""
    try:
        return g.log_path.read_text(errors="replace").count('"request": "POST /classify')
    except OSError:
        return 0


def scenario_body_limit(args, profile, bodies: Path, logs: Path) -> Scenario:
    s = Scenario("body_limit", "Body-size limit through nginx (deploy/nginx.conf "
                               "client_max_body_size)")
    log(f"\n== f. {s.title} ==")
    with Gunicorn("body-limit", args.model_dir, logs) as g, Nginx("body-limit", g.port, logs) as n:
        results = {}
        for label, size in (("9 MiB", NGINX_LIMIT_BYTES), ("8,000,000 bytes", PASS_BYTES)):
            seen = upstream_posts(g)
            r = raw_post(n.port, "/classify", json_body_of_size(size))
            time.sleep(0.5)  # the access log line is written after the answer
            r["reached_gunicorn"] = upstream_posts(g) > seen
            r["size"] = size
            r["server_header"] = r["headers"].get("server")
            body = r.pop("body")
            r["body_head"] = body[:300]
            results[label] = r
            log(f"    {label} ({size:,} bytes): HTTP {r['status']} from "
                f"{'the app (via nginx)' if r['reached_gunicorn'] else 'nginx alone'} in "
                f"{r['seconds']} s: {body[:200]}")
        time.sleep(1)
        try:
            nginx_lines = (logs / "nginx-body-limit-error.log").read_text(errors="replace")
        except OSError:
            nginx_lines = ""
        results["9 MiB"]["nginx_error_log"] = [l for l in nginx_lines.splitlines()
                                               if "too large body" in l][:3]
        for line in results["9 MiB"]["nginx_error_log"]:
            log(f"    nginx: {line[:200]}")
        s.figures.update(results)
        big, ok = results["9 MiB"], results["8,000,000 bytes"]
        j = big["json"] or {}
        s.check("9 MiB: 413 from nginx (never reached gunicorn)",
                big["status"] == 413 and not big["reached_gunicorn"],
                f"HTTP {big['status']}, reached gunicorn: {big['reached_gunicorn']}")
        s.check("9 MiB: the 413 is in the service's JSON error shape",
                j.get("code") == 413 and isinstance(j.get("status"), str)
                and isinstance(j.get("message"), str)
                and big["headers"].get("content-type", "").startswith("application/json"),
                f"content-type {big['headers'].get('content-type')!r}, body {big['body_head']!r}")
        jj = ok["json"] or {}
        s.check("8,000,000 bytes: passes nginx and gets the app's own JSON answer (not a 5xx)",
                ok["reached_gunicorn"] and ok["status"] < 500 and "code" in jj,
                f"HTTP {ok['status']}: {jj.get('message')!r} {json.dumps(jj.get('errors'))[:160]}")
    return s


# --------------------------------------------------------------------------------------------

RUNNERS = {"sustained": scenario_sustained, "kill_worker": scenario_kill_worker,
           "memory": scenario_memory, "bad_model": scenario_bad_model,
           "runtime_fault": scenario_runtime_fault, "body_limit": scenario_body_limit}


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def busy_processes() -> list[str]:
    """Processes (not ours) using CPU right now, over 1 s: what could distort the figures."""
    def snap():
        out = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    text = (entry / "stat").read_text()
                    f = text[text.rindex(")") + 2:].split()
                    out[int(entry.name)] = (int(f[11]) + int(f[12]),
                                            text[text.index("(") + 1:text.rindex(")")])
                except (OSError, ValueError):
                    pass
        return out
    a = snap()
    time.sleep(1)
    b = snap()
    tck = os.sysconf("SC_CLK_TCK")
    busy = sorted(((b[p][0] - a[p][0]) / tck, p, b[p][1]) for p in b if p in a)
    return [f"{name} (pid {pid}): {cores:.2f} cores" for cores, pid, name in reversed(busy)
            if cores >= 0.2 and pid != os.getpid()]


def preflight(args) -> None:
    problems = []
    if not stack.GUNICORN.exists():
        problems.append(f"{stack.GUNICORN.parent.parent} is missing or incomplete: "
                        "run `make install`")
    if not Path(args.data).is_file():
        problems.append(f"no ticket file {args.data}")
    metadata = Path(args.model_dir) / "metadata.json"
    if not metadata.is_file() and args.wait_model > 0:
        log(f"waiting up to {args.wait_model} s for {metadata} (a training run may be writing "
            "it; metadata.json is put in place last)")
        deadline = time.monotonic() + args.wait_model
        while not metadata.is_file() and time.monotonic() < deadline:
            time.sleep(10)
    if not metadata.is_file():
        problems.append(f"no model in {args.model_dir} ({metadata} missing): run `make model`")
    if problems:
        log("faults: cannot run:\n  " + "\n  ".join(problems))
        raise SystemExit(2)
    stack.ensure_tool("nginx", "nginx")
    stack.ensure_tool("wrk", "wrk")


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run, about 2 minutes: short loads, 3,000 requests for memory")
    parser.add_argument("--only", choices=SCENARIOS, action="append",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--duration", type=int, default=None,
                        help="seconds of the sustained load (default 60, or 10 with --quick)")
    parser.add_argument("--memory-requests", type=int, default=None,
                        help="requests for the memory scenario (default 50,000; 3,000 quick)")
    parser.add_argument("--data", default="data/test.jsonl")
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--wait-model", type=int, default=0, metavar="SECONDS",
                        help="wait this long for MODEL_DIR/metadata.json (a training run)")
    parser.add_argument("--out", type=Path, default=FAULTS / "results")
    args = parser.parse_args()
    os.chdir(ROOT)
    args.model_dir = str(Path(args.model_dir).resolve())
    preflight(args)
    profile = dict(PROFILES["quick" if args.quick else "full"])
    if args.memory_requests:
        profile["memory_requests"] = args.memory_requests
    if args.duration:
        profile["sustained_s"] = args.duration
    out = args.out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.iterdir():
        if old.is_file():
            old.unlink()

    metadata = json.loads((Path(args.model_dir) / "metadata.json").read_text())
    overrides = {k: v for k, v in os.environ.items() if k.startswith("SMART_SUPPORT_")}
    others = busy_processes()
    results = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "profile": "quick" if args.quick else "full", "settings": profile,
               "commit": git_commit(), "model_version": metadata.get("version"),
               "model_dir": args.model_dir, "data": args.data, "cores": os.cpu_count(),
               "loadavg_before": os.getloadavg(), "busy_processes_before": others,
               "env_overrides": overrides, "scenarios": {}}
    log(f"faults: {results['profile']} run, model {results['model_version']}, "
        f"commit {results['commit']}, {os.cpu_count()} cores, load average "
        f"{results['loadavg_before'][0]:.2f}")
    if overrides:
        log(f"  note: SMART_SUPPORT_* settings inherited from your environment: {overrides}")
    if others:
        log("  WARNING: busy processes not started by this run (figures may be distorted): "
            + "; ".join(others))

    with tempfile.TemporaryDirectory(prefix="faults-bodies-") as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        tickets = [json.loads(l) for l in Path(args.data).read_text().splitlines() if l.strip()]
        bodies.write_text("\n".join(json.dumps(
            {"subject": t.get("subject") or "", "description": t["description"],
             **({"ticket_id": str(t["id"])} if t.get("id") else {})}, ensure_ascii=False)
            for t in tickets) + "\n")
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _terminate)
        started = time.monotonic()
        interrupted = False
        try:
            for name in SCENARIOS:
                if args.only and name not in args.only:
                    continue
                try:
                    scenario = RUNNERS[name](args, profile, bodies, logs)
                except StackError as exc:
                    scenario = Scenario(name, name)
                    scenario.check("the scenario ran", False, str(exc).splitlines()[0])
                    log(f"  ERROR: {exc}")
                finally:
                    CHILDREN.stop_all()  # nothing of one scenario outlives it
                results["scenarios"][name] = scenario.as_dict()
        except KeyboardInterrupt:
            interrupted = True
            log("\ninterrupted: stopping every process this run started")
        finally:
            CHILDREN.stop_all()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["loadavg_after"] = os.getloadavg()
    results["interrupted"] = interrupted
    results["ok"] = (not interrupted and bool(results["scenarios"])
                     and all(s["ok"] for s in results["scenarios"].values()))
    if not results["scenarios"]:
        log("\nno scenario finished: report.md and results.json left as they were")
        return 130 if interrupted else 2
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "report.md").write_text(report.render(results))
    report.print_summary(results)
    log(f"\nwrote {out / 'report.md'} and {out / 'results.json'}; logs in {logs} "
        f"({results['elapsed_s'] / 60:.1f} min)")
    if interrupted:
        return 130
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
