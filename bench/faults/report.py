"""report.md and the printed summary from results.json (bench/faults/run.py writes both).

    .venv/bin/python bench/faults/report.py bench/faults/results/results.json   # rebuild report.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _wrk_row(label: str, r: dict) -> str:
    return (f"| {label} | {r['requests']:,} | {r['rps']:.1f} | {r['non2xx']} | "
            f"{r['socket_errors_total']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['degraded']} | {r.get('cpu', {}).get('other_cores', 'n/a')} |")


WRK_HEAD = ("| run | requests | req/s | non-2xx | socket errors | p50 ms | p99 ms | degraded | "
            "other procs' cores |\n|---|---|---|---|---|---|---|---|---|")


def key_figures(name: str, f: dict) -> list[str]:
    """The lines of the summary (and report) that carry a scenario's main figures."""
    out = []
    if name in ("sustained", "memory") and "wrk" in f:
        r = f["wrk"]
        out.append(f"{r['requests']:,} requests, {r['rps']:.1f} req/s, non-2xx {r['non2xx']}, "
                   f"socket errors {r['socket_errors_total']}, p50 {r['p50_ms']:.0f} ms, "
                   f"p99 {r['p99_ms']:.0f} ms")
    if name == "sustained" and "rss_after" in f:
        out.append(f"RSS master+workers {f['rss_before']['total_mib']:.0f} -> "
                   f"{f['rss_after']['total_mib']:.0f} MiB")
    if name == "memory" and "rss_growth" in f:
        out.append(f"RSS master+workers {f['rss_before']['total_mib']:.1f} -> "
                   f"{f['rss_after']['total_mib']:.1f} MiB ({f['rss_growth']:+.2%}), sampled "
                   f"peak {f['rss_peak_total_mib']:.1f} MiB")
    if name == "kill_worker" and "wrk" in f:
        r, k = f["wrk"], f["kill"]
        out.append(f"{r['requests']:,} requests, failed {f['failed_requests']} (non-2xx "
                   f"{r['non2xx']}, socket errors {r['socket_errors_total']}), p50 "
                   f"{r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
        out.append(f"replacement forked {k.get('replaced_s')} s after the kill, model loaded at "
                   f"{k.get('model_loaded_s')} s, /ready 200 from the new worker at "
                   f"{k.get('ready_from_new_worker_s')} s")
        if f.get("answers_per_second_before"):
            after = f.get("answers_per_second_after_recovery")
            out.append(f"answers/s {f['answers_per_second_before']:.1f} before the kill, "
                       f"{after:.1f} after recovery" if after is not None else
                       f"answers/s {f['answers_per_second_before']:.1f} before the kill")
    if name == "bad_model":
        for case, v in f.items():
            rb = v.get("ready_body") or {}
            out.append(f"{case}: /ready {v['ready_statuses'][0]} file={rb.get('file')!r}, "
                       f"/health {v['health_status']}, /classify {v['classify_status']}")
    if name == "runtime_fault":
        for mode, v in f.items():
            w = v.get("wrk") or {}
            out.append(f"{mode}: {v.get('answers')} answers {v.get('statuses')}, under load "
                       f"{w.get('requests')} requests non-2xx {w.get('non2xx')} degraded "
                       f"{w.get('degraded')}; breaker per worker "
                       + json.dumps({k: (x.get('breaker') or {}).get('state')
                                     for k, x in (v.get('ready') or {}).items()}))
    if name == "body_limit":
        for label, v in f.items():
            out.append(f"{label}: HTTP {v['status']} "
                       f"{'from the app' if v['reached_gunicorn'] else 'from nginx'}: "
                       f"{v['body_head'][:110]}")
    return out


def render(results: dict) -> str:
    lines = [
        "# Smart-Support under load and faults",
        "",
        f"`bench/faults/run.py` ({results['profile']} run), started {results['started_at']}, "
        f"commit `{results.get('commit') or '?'}`, model `{results.get('model_version')}`, "
        f"{results.get('cores')} cores, load average {results['loadavg_before'][0]:.2f} before "
        f"and {results.get('loadavg_after', [0])[0]:.2f} after; took "
        f"{results.get('elapsed_s', 0) / 60:.1f} min.",
        "gunicorn exactly as deployed (`gunicorn -c gunicorn.conf.py wsgi:app`, 2 workers), "
        "nginx in front with the repo's `deploy/nginx.conf` server block (only the ports "
        "changed), wrk on the same machine: client, proxy and server share the cores.",
        "",
        f"**Result: {'all expectations held' if results.get('ok') else 'SOME EXPECTATIONS FAILED'}"
        f"{' (interrupted)' if results.get('interrupted') else ''}.**",
        "",
    ]
    if results.get("busy_processes_before"):
        lines += ["Other busy processes at the start (figures may be distorted): "
                  + "; ".join(results["busy_processes_before"]), ""]
    if results.get("env_overrides"):
        lines += [f"SMART_SUPPORT_* settings inherited from the environment: "
                  f"`{json.dumps(results['env_overrides'])}`", ""]
    for name, s in results["scenarios"].items():
        f = s["figures"]
        lines += [f"## {name}: {s['title']}", "",
                  f"{'PASS' if s['ok'] else 'FAIL'} ({s['seconds']:.0f} s)", ""]
        wrk_rows = []
        if "wrk" in f:
            wrk_rows.append(_wrk_row(name, f["wrk"]))
        for mode in ("raise", "slow"):
            if isinstance(f.get(mode), dict) and "wrk" in f[mode]:
                wrk_rows.append(_wrk_row(f"{mode}, under load", f[mode]["wrk"]))
        if wrk_rows:
            lines += [WRK_HEAD] + wrk_rows + [""]
        for line in key_figures(name, f):
            lines.append(f"- {line}")
        if name == "kill_worker" and f.get("timeline"):
            lines += ["", "Answers and failures per second (t = 0: the second of the kill):", "",
                      "| t (s) | " + " | ".join(str(x["t"]) for x in f["timeline"]) + " |",
                      "|---|" + "---|" * len(f["timeline"]),
                      "| answers | " + " | ".join(str(x["answers"]) for x in f["timeline"]) + " |",
                      "| failures | " + " | ".join(str(x["failures"]) for x in f["timeline"])
                      + " |"]
            for e in f.get("nginx_upstream_errors") or []:
                lines.append(f"- nginx error log: `{e[:220]}`")
        if name == "runtime_fault":
            for mode in ("raise", "slow"):
                v = f.get(mode)
                if not isinstance(v, dict):
                    continue
                lines += ["", f"{mode}: {v.get('fault')}", ""]
                for w, p in (v.get("per_worker") or {}).items():
                    lines.append(f"- worker {w}: {p['answers']} answers, "
                                 f"{p['transformer_answers']} from the transformer "
                                 f"({p['transformer_ms']} ms), then baseline (median "
                                 f"{p['baseline_ms_median']} ms); transformer called "
                                 f"{p['predict_calls_seen']} times")
                for w, r in (v.get("ready") or {}).items():
                    lines.append(f"- `/ready` from worker {w}: {r['status']} "
                                 f"`{json.dumps({'degraded': r['degraded'], 'breaker': r['breaker']})}`")
        if name == "body_limit":
            for e in (f.get("9 MiB") or {}).get("nginx_error_log") or []:
                lines.append(f"- nginx error log: `{e[:220]}`")
        lines += ["", "| expectation | ok | detail |", "|---|---|---|"]
        for c in s["checks"]:
            detail = c["detail"].replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(f"| {c['what']} | {'yes' if c['ok'] else '**NO**'} | {detail} |")
        for n in s["notes"]:
            lines.append(f"\nNote: {n}")
        lines.append("")
    lines += ["Raw figures: `results.json`; server, nginx and wrk logs: `logs/` (not committed).",
              ""]
    return "\n".join(lines)


def print_summary(results: dict) -> None:
    out = ["", "== summary =="]
    for name, s in results["scenarios"].items():
        out.append(f"  {'PASS' if s['ok'] else 'FAIL'}  {name}: {s['title']}")
        for line in key_figures(name, s["figures"]):
            out.append(f"          {line}")
        for c in s["checks"]:
            if not c["ok"]:
                out.append(f"          FAILED: {c['what']}: {c['detail'][:200]}")
    out.append("  overall: " + ("INTERRUPTED" if results.get("interrupted") else
                            "all expectations held" if results.get("ok") else "FAILED"))
    print("\n".join(out), file=sys.stderr, flush=True)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else
                Path(__file__).resolve().parent / "results" / "results.json")
    data = json.loads(path.read_text())
    (path.parent / "report.md").write_text(render(data))
    print_summary(data)
