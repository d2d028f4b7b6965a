"""Sequential /classify latency on one connection, with realistic tickets from a JSONL file.

    python bench/latency.py --url http://127.0.0.1:8000 --data data/test.jsonl --requests 300

Prints p50/p95/p99 client-side latency and the server's own latency_seconds. Figures are
medians of one run on this machine; rerun to compare, never compare across machines.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from urllib.parse import urlparse


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data", default="data/test.jsonl")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    tickets = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    bodies = [json.dumps({"subject": t.get("subject", ""), "description": t["description"]})
              for t in tickets]
    target = urlparse(args.url)
    client_ms, server_ms = [], []
    for i in range(args.warmup + args.requests):
        body = bodies[i % len(bodies)]
        started = time.perf_counter()
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        connection.request("POST", "/classify", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"request {i}: HTTP {response.status} {payload}")
        if i >= args.warmup:
            client_ms.append(elapsed)
            server_ms.append(payload["latency_seconds"] * 1000)
    print(f"{args.requests} sequential requests, one connection, tickets from {args.data}")
    print(f"client  p50 {statistics.median(client_ms):6.1f} ms  p95 {percentile(client_ms, 95):6.1f} ms"
          f"  p99 {percentile(client_ms, 99):6.1f} ms")
    print(f"server  p50 {statistics.median(server_ms):6.1f} ms  p95 {percentile(server_ms, 95):6.1f} ms"
          f"  p99 {percentile(server_ms, 99):6.1f} ms  (latency_seconds)")


if __name__ == "__main__":
    main()
