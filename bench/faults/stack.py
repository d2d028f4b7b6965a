"""Processes for the fault scenarios: gunicorn as deployed, nginx in front of it from the repo's
deploy/nginx.conf, and wrk; every one in its own process group, always stopped.

Standard library only (the orchestrator must not import torch or the service), Linux only
(/proc is read for worker pids, memory and which worker holds a connection).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

FAULTS = Path(__file__).resolve().parent
ROOT = FAULTS.parent.parent
# the virtual environment this script runs in (`make faults VENV=...` picks it)
PYTHON = Path(sys.executable).parent / "python"
GUNICORN = Path(sys.executable).parent / "gunicorn"
NGINX_SITE = ROOT / "deploy" / "nginx.conf"
WRK_SCRIPT = FAULTS / "wrk_faults.lua"

sys.path.insert(0, str(FAULTS.parent))  # bench/: the process helpers shared with bench/run.py
from procs import CHILDREN, Children, child_env, free_port, log, tail  # noqa: E402,F401


class StackError(Exception):
    """A process could not be started or did not behave; the message says why."""


# --------------------------------------------------------------------------------------------
# HTTP helpers (one connection per call, no keep-alive: simple and exact)

def http(method: str, url: str, body: bytes | None = None, timeout: float = 15.0,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body); HTTP errors are answers too. Raises OSError if no answer."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def json_or_none(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------------------------
# /proc readers

def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text(errors="replace")
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def socket_inode(local_port: int, remote_port: int) -> int:
    """Inode of the server side of the loopback TCP connection (local_port <- remote_port);
    0 while the connection still waits in the listen queue (nobody has accepted it)."""
    want_local, want_remote = f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        f = line.split()
        if f[1] == want_local and f[2] == want_remote:
            return int(f[9])
    return 0


def holder_of(inode: int, pids: list[int]) -> int | None:
    """Which of `pids` has the socket `inode` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------------------------
# gunicorn, exactly as deployed

class Gunicorn:
    """`.venv/bin/gunicorn -c gunicorn.conf.py <app>` from the repo root, env HOST, PORT,
    WORKERS, SMART_SUPPORT_MODEL_DIR, a temporary SMART_SUPPORT_DATA_DIR and
    PROMETHEUS_MULTIPROC_DIR. `app` is wsgi:app unless a scenario runs the fault shim."""

    def __init__(self, name: str, model_dir: Path | str, log_dir: Path, workers: int = 2,
                 app: str = "wsgi:app", extra_env: dict | None = None,
                 expect_ready: bool = True, ready_timeout: float = 180.0):
        self.name, self.model_dir, self.workers_n, self.app = name, model_dir, workers, app
        self.log_path = log_dir / f"gunicorn-{name}.log"
        self.extra_env = dict(extra_env or {})
        self.expect_ready, self.ready_timeout = expect_ready, ready_timeout
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None

    @property
    def argv(self) -> list:
        return [GUNICORN, "-c", "gunicorn.conf.py", self.app]

    def __enter__(self) -> "Gunicorn":
        self.tmp = tempfile.TemporaryDirectory(prefix=f"faults-{self.name}-")
        data_dir = Path(self.tmp.name) / "data"
        metrics_dir = Path(self.tmp.name) / "metrics"
        data_dir.mkdir()
        metrics_dir.mkdir()
        self.env = child_env(HOST="127.0.0.1", PORT=self.port, WORKERS=self.workers_n,
                             SMART_SUPPORT_MODEL_DIR=self.model_dir,
                             SMART_SUPPORT_DATA_DIR=data_dir,
                             PROMETHEUS_MULTIPROC_DIR=metrics_dir, **self.extra_env)
        self._log = open(self.log_path, "w")
        self._log.write(f"# {' '.join(map(str, self.argv))}\n# env: " + json.dumps(
            {k: v for k, v in self.env.items()
             if k in ("HOST", "PORT", "WORKERS", "PYTHONPATH") or k.startswith(
                 ("SMART_SUPPORT_", "PROMETHEUS_", "FAULTS_"))}) + "\n")
        self._log.flush()
        started = time.monotonic()
        self.proc = CHILDREN.start(self.argv, cwd=ROOT, env=self.env, stdout=self._log,
                                   stderr=subprocess.STDOUT)
        try:
            self._wait()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.start_s = time.monotonic() - started
        log(f"  gunicorn {self.name}: {'ready' if self.expect_ready else 'answering'} in "
            f"{self.start_s:.1f} s on {self.base} (master {self.proc.pid}, "
            f"workers {self.workers()})")
        return self

    def _wait(self) -> None:
        """Until every worker is up: /ready 200 (or, for a server expected not to be ready,
        /health 200 with all workers forked and the model load finished or failed)."""
        deadline = time.monotonic() + self.ready_timeout
        first_ok = None
        while True:
            if self.proc.poll() is not None:
                raise StackError(f"gunicorn {self.name} exited during start-up (exit "
                                 f"{self.proc.returncode}); end of {self.log_path}:\n"
                                 f"{tail(self.log_path)}")
            try:
                if self.expect_ready:
                    status, _, body = http("GET", self.base + "/ready", timeout=5)
                    if status == 200 and len(self.workers()) >= self.workers_n:
                        first_ok = first_ok or time.monotonic()
                        # every worker's model loaded (its INFO log line; 30 s at most, in
                        # case the log level hides it)
                        if self.models_loaded() >= self.workers_n \
                                or time.monotonic() - first_ok > 30:
                            return
                    if status == 503:  # a worker answers only after its load: this is final
                        raise StackError(f"gunicorn {self.name} is not ready: /ready answered "
                                         f"503 {body[:400]!r}; end of {self.log_path}:\n"
                                         f"{tail(self.log_path)}")
                else:
                    status, _, _ = http("GET", self.base + "/health", timeout=5)
                    if status == 200 and len(self.workers()) >= self.workers_n:
                        time.sleep(0.5)  # the other worker's load ends as fast (it fails)
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"gunicorn {self.name} not up after {self.ready_timeout:.0f} "
                                 f"s; end of {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.25)

    def __exit__(self, *exc):
        if self.proc is not None:
            Children.stop(self.proc)
        if not self._log.closed:
            self._log.close()
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None
        return False

    def workers(self) -> list[int]:
        return children_of(self.proc.pid)

    def models_loaded(self) -> int:
        """How many workers have logged their model as loaded (every one must, before load)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return sum(1 for line in text.splitlines()
                   if '"message": "model ' in line and " loaded from " in line)

    def pids(self) -> list[int]:
        return [self.proc.pid] + self.workers()

    def rss(self) -> dict:
        """VmRSS of master and workers, MiB, and their sum."""
        master = rss_kib(self.proc.pid) / 1024
        workers = {pid: rss_kib(pid) / 1024 for pid in self.workers()}
        return {"master_mib": round(master, 1),
                "workers_mib": {str(k): round(v, 1) for k, v in workers.items()},
                "total_mib": round(master + sum(workers.values()), 1)}

    def ready_probe(self, timeout: float = 15.0) -> tuple[int | None, int, dict | None]:
        """GET /ready straight to gunicorn on a connection we can trace to the worker that
        accepted it: (worker pid, status, JSON). The request line is sent without its final
        blank line first, so the sync worker that accepts it waits for the rest while /proc
        tells which process holds the server side of the connection."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            sock.sendall(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            source_port = sock.getsockname()[1]
            deadline, pid = time.monotonic() + timeout, None
            while pid is None and time.monotonic() < deadline:
                inode = socket_inode(self.port, source_port)
                if inode:
                    pid = holder_of(inode, self.workers())
                if pid is None:
                    time.sleep(0.005)
            sock.sendall(b"Connection: close\r\n\r\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            sock.close()
        raw = b"".join(chunks)
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return pid, status, json_or_none(body)


# --------------------------------------------------------------------------------------------
# nginx with the repo's site config

def ensure_tool(name: str, package: str) -> str:
    """Path of `name`; installs `package` with apt-get when missing and we are root."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"faults: `{name}` is not installed and this is not root with apt-get: "
                         f"install it first (`sudo apt-get install -y {package}`), then rerun.")
    log(f"installing {package} (apt-get install -y {package})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise SystemExit(f"faults: `apt-get install -y {package}` failed; install {name} "
                             "by hand and rerun.")
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)
    if not found:
        raise SystemExit(f"faults: {package} installed but `{name}` is not on PATH")
    return found


def render_site(upstream_port: int, listen_port: int, site: Path = NGINX_SITE) -> str:
    """The repo's server block with only the upstream server and the listen address changed,
    so its body-size limit, error page and proxy settings are what is tested."""
    text = site.read_text()
    upstream = re.search(r"upstream\s+\S+\s*\{.*?\}", text, re.S)
    if not upstream:
        raise StackError(f"{site}: no upstream block to point at the test's gunicorn")
    block, n = re.subn(r"(\bserver\s+)[^\s;]+(\s*[^;]*;)",
                       rf"\g<1>127.0.0.1:{upstream_port}\g<2>", upstream.group(0))
    if n != 1:
        raise StackError(f"{site}: expected one `server` line in the upstream block, found {n}")
    text = text[:upstream.start()] + block + text[upstream.end():]
    text, n = re.subn(r"(?m)^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{listen_port};",
                      text)
    if n != 1:
        raise StackError(f"{site}: expected one `listen` line, found {n}")
    return text


MAIN_CONF = """\
# Generated by bench/faults/stack.py: a throw-away main config around the repo's
# deploy/nginx.conf server block (below, unchanged except upstream and listen ports).
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {logs}/nginx-{name}-error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
    access_log {logs}/nginx-{name}-access.log combined buffer=64k flush=1s;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

{site}
}}
"""


class Nginx:
    """nginx as a child process (`nginx -c <tmp>/nginx.conf -p <tmp>`), never the system
    service, in front of one gunicorn."""

    def __init__(self, name: str, upstream_port: int, log_dir: Path):
        self.name, self.upstream_port, self.log_dir = name, upstream_port, log_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.tmp = None

    def __enter__(self) -> "Nginx":
        binary = ensure_tool("nginx", "nginx")
        self.tmp = tempfile.TemporaryDirectory(prefix=f"faults-nginx-{self.name}-")
        try:
            self._start(binary)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, binary: str) -> None:
        tmp = Path(self.tmp.name)
        # As root, nginx workers run as `nobody`: they must reach the body temp directory.
        os.chmod(tmp, 0o755)
        site = render_site(self.upstream_port, self.port)
        conf = tmp / "nginx.conf"
        conf.write_text(MAIN_CONF.format(tmp=tmp, logs=self.log_dir, name=self.name,
                                         site="    " + site.replace("\n", "\n    ")))
        (self.log_dir / f"nginx-{self.name}.conf").write_text(conf.read_text())
        errors = self.log_dir / f"nginx-{self.name}-stderr.log"
        check = subprocess.run([binary, "-t", "-c", conf, "-p", tmp, "-e", errors],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"nginx -t refused the rendered config {conf}:\n{check.stderr}")
        self._out = open(errors, "a")
        self.proc = CHILDREN.start([binary, "-c", conf, "-p", tmp, "-e", errors],
                                   stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise StackError(f"nginx exited at start (exit {self.proc.returncode}): "
                                 f"{tail(errors)}")
            try:
                status, _, _ = http("GET", self.base + "/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"nginx on {self.base} did not answer /health: {tail(errors)}")
            time.sleep(0.1)
        log(f"  nginx {self.name}: {self.base} -> 127.0.0.1:{self.upstream_port} "
            f"(master {self.proc.pid}, config {conf})")

    def __exit__(self, *exc):
        if self.proc is not None:
            Children.stop(self.proc, grace=10)
            self._out.close()
            self.proc = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None
        return False


# --------------------------------------------------------------------------------------------
# wrk

def run_wrk(url: str, bodies: Path, connections: int, log_path: Path,
            duration: float | None = None, max_requests: int = 0, timeout: float = 10.0,
            during=None) -> dict:
    """One wrk run with bench/faults/wrk_faults.lua: duration-limited, or stopped after
    `max_requests` answers. `during(proc)` runs while wrk runs (e.g. kill a worker).
    Returns the script's WRK_FAULTS_JSON result plus p50/p99 in ms."""
    threads = min(connections, 2)
    seconds = duration if duration else 3600
    per_thread = -(-max_requests // threads) if max_requests else 0
    argv = ["wrk", "-t", threads, "-c", connections, "-d", f"{seconds:g}s", "--latency",
            "--timeout", f"{timeout:g}s", "-s", WRK_SCRIPT, url, "--", bodies, per_thread]
    started = time.monotonic()
    proc = CHILDREN.start(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read():  # wrk's output; with a request limit, SIGINT once every thread is done
        done = 0
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("WRK_THREAD_DONE"):
                done += 1
                if done == threads:
                    try:
                        os.kill(proc.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    extra = None
    try:
        if during is not None:
            extra = during(proc)
        proc.wait(timeout=seconds + 120)
        reader.join(timeout=10)
    except BaseException:
        Children.stop(proc, grace=2)
        raise
    out = "".join(lines)
    log_path.write_text(" ".join(map(str, argv)) + "\n\n" + out)
    line = next((l for l in out.splitlines() if l.startswith("WRK_FAULTS_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise StackError(f"wrk failed (exit {proc.returncode}); {log_path}:\n{out[-1500:]}")
    stats = json.loads(line[len("WRK_FAULTS_JSON "):])
    lat = stats.pop("latency_us")
    errors = stats["errors"]
    socket_errors = {k: errors[k] for k in ("connect", "read", "write", "timeout")}
    result = {
        "connections": connections, "wrk_threads": threads,
        "duration_s": round(stats["duration_us"] / 1e6, 2),
        "wall_s": round(time.monotonic() - started, 2),
        "requests": stats["requests"], "responses": stats["responses"],
        "rps": round(stats["requests"] / max(1e-9, stats["duration_us"] / 1e6), 1),
        "non2xx": stats["non2xx"], "status5xx": stats["status5xx"],
        "by_status": stats["by_status"], "degraded": stats["degraded"],
        "socket_errors": socket_errors, "socket_errors_total": sum(socket_errors.values()),
        "p50_ms": round(lat["p50"] / 1000, 1), "p99_ms": round(lat["p99"] / 1000, 1),
        "max_ms": round(lat["max"] / 1000, 1),
        "per_second": stats.get("per_second", {}),
    }
    if extra is not None:
        result["during"] = extra
    return result
