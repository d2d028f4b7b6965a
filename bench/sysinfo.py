"""Small /proc readers shared by the benchmark scripts (Linux only, standard library only).

Why they exist: on a 2-core machine the load client, the server and anything else running
(tests, another server) compete for the same cores, so every figure is recorded together with
the CPU it used and the CPU *others* used meanwhile ("foreign" load). Without that, a noisy run
cannot be told from a slow server.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU-seconds of all cores since boot.

    busy = user + nice + system + irq + softirq (guest time is already inside user).
    steal = time the hypervisor gave our virtual cores to someone else: CPU we did not get.
    """
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]] + [0] * 8
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / CLK_TCK, fields[7] / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU-seconds of one live process; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's main thread so far: a
    gunicorn sync worker serves its requests there. (0, 0) if it is gone."""
    counts = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    counts[name] = int(value)
    except OSError:
        return 0, 0
    return counts.get("voluntary_ctxt_switches", 0), counts.get("nonvoluntary_ctxt_switches", 0)


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn workers of a master), by scanning /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def own_max_rss_mib() -> float:
    """This process's peak resident memory so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now), VmHWM (peak resident since start) and Pss (shared pages split fairly)."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                values["Pss"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return values


class CpuMeter:
    """CPU used by a set of processes, and by everyone else, over a time window.

    `pids` is a callable so that processes appearing later (workers) are picked up.
    `extra` returns CPU-seconds consumed by reaped children (wrk), which /proc no longer shows.
    """

    def __init__(self, pids=lambda: [], extra=lambda: 0.0):
        self.pids, self.extra = pids, extra

    def _ours(self) -> float:
        return sum(process_cpu_seconds(p) for p in self.pids()) + self.extra()

    def __enter__(self):
        self.started = time.monotonic()
        (self.busy0, self.steal0), self.ours0 = system_cpu_seconds(), self._ours()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        busy, steal = system_cpu_seconds()
        busy, steal, ours = busy - self.busy0, steal - self.steal0, self._ours() - self.ours0
        self.result = {
            "elapsed_s": round(elapsed, 3),
            "busy_cores": round(busy / elapsed, 3),
            "our_cores": round(ours / elapsed, 3),
            "foreign_cores": round(max(0.0, busy - ours) / elapsed, 3),
            "steal_cores": round(steal / elapsed, 3),
        }
        return self.result


def machine() -> dict:
    """What the numbers were measured on; they are only comparable on the same machine."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        # which build: Debian's runs the Python around the model faster than pyenv's default
        # (README, "Performance", session 13)
        "python_executable": os.path.realpath(sys.executable),
        "loadavg": os.getloadavg(),
        # malloc tunables (`make bench` sets huge pages) change the figures: recorded
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }


def wait_until_quiet(max_wait: float, threshold: float = 0.2, sample: float = 0.5) -> float:
    """Wait up to `max_wait` seconds for the machine to be idle (all cores together busy less
    than `threshold` cores over `sample` seconds); returns the seconds waited.

    On a shared 2-core machine a test suite starting in the middle of a measurement halves it
    (and wrecks 2-thread torch, whose threads wait for each other). Call it only while nothing
    of the benchmark's own is running, since it cannot tell whose CPU it sees."""
    started = time.monotonic()
    while True:
        busy0 = system_cpu_seconds()[0]
        time.sleep(sample)
        busy = (system_cpu_seconds()[0] - busy0) / sample
        waited = time.monotonic() - started
        if busy < threshold or waited >= max_wait:
            return waited
