"""Child processes for the benchmark scripts (bench/run.py, bench/faults/): each in its own
process group, all stopped on the way out, plus the small helpers both scripts use."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def log(message: str = "") -> None:
    print(message, file=sys.stderr, flush=True)


class Children:
    """Every process started here, each in its own session (process group), so that one killpg
    stops a gunicorn master with its workers, or nginx with its workers."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, argv, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([str(a) for a in argv], start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float = 25.0, sig=signal.SIGTERM) -> None:
        """`sig` to the whole group, SIGKILL after `grace` seconds. Also kills what is left of
        the group when its leader has already exited (e.g. a worker orphaned by a dead master)."""
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()


CHILDREN = Children()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join([l for l in text if "GET /ready" not in l and "GET /health" not in l]
                     [-lines:])
