"""Submit latency at a steady request rate: ``python -m bench.api``.

    python -m bench.api --url http://127.0.0.1:8000 --key $KEY --rate 200 --seconds 20

Sends real HumAID test tweets to ``POST /v1/classifications`` on an open
schedule (request i is due at start + i / rate, whatever earlier ones
did), from a pool of threads with keep-alive connections, and measures
each submit from the moment it was due to its answer, so a stall shows up
in the percentiles instead of slowing the load. Goal: p99 <= 20 ms and no
errors. The last line printed is JSON.

The service's per-key limits must allow the rate: with the defaults an
operator key may make 1,200 requests a minute (20 a second); run the
service for this benchmark with, for instance,
``AICRISISALERT_RATELIMIT_BY_ROLE='{"operator": "100000/hour;20000/minute"}'``.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from classifier.data import data_dir
from classifier.data import read_tsv

GOAL_P99_MS = 20.0


def percentile(values, fraction):
    """Return the nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def run(url, key, *, rate, seconds, threads, texts):
    """Drive the load; return ``(latencies_ms, statuses, late_starts)``."""
    total = int(rate * seconds)
    local = threading.local()
    start = time.perf_counter() + 0.5
    latencies = [None] * total
    statuses = [None] * total

    def session():
        if not hasattr(local, "http"):
            local.http = requests.Session()
            local.http.headers["Authorization"] = f"Bearer {key}"
        return local.http

    def send(index):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            response = session().post(
                f"{url}/v1/classifications",
                json={"text": texts[index % len(texts)], "source": "bench"},
                timeout=10,
            )
            statuses[index] = response.status_code
        except requests.RequestException as error:
            statuses[index] = type(error).__name__
        latencies[index] = (time.perf_counter() - due) * 1000

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, range(total)))
    return latencies, statuses


def main(argv=None):
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AICRISISALERT_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=64)
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set AICRISISALERT_KEY")

    texts = [row[1] for row in read_tsv(data_dir() / "test.tsv", limit=2000)]
    started = time.perf_counter()
    latencies, statuses = run(
        args.url.rstrip("/"),
        args.key,
        rate=args.rate,
        seconds=args.seconds,
        threads=args.threads,
        texts=texts,
    )
    elapsed = time.perf_counter() - started
    ok = [lat for lat, status in zip(latencies, statuses, strict=True) if status == 202]
    counts = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    summary = {
        "requests": len(statuses),
        "rate_asked": args.rate,
        "rate_achieved": round(len(statuses) / elapsed, 1),
        "statuses": counts,
        "errors": len(statuses) - len(ok),
        "p50_ms": round(percentile(ok, 0.50), 2) if ok else None,
        "p95_ms": round(percentile(ok, 0.95), 2) if ok else None,
        "p99_ms": round(percentile(ok, 0.99), 2) if ok else None,
        "max_ms": round(max(ok), 2) if ok else None,
        "goal_p99_ms": GOAL_P99_MS,
    }
    summary["goal_met"] = bool(
        ok and summary["errors"] == 0 and summary["p99_ms"] <= GOAL_P99_MS
    )
    print(
        f"submits={summary['requests']} at {summary['rate_achieved']}/s "
        f"statuses={counts} p50={summary['p50_ms']}ms p95={summary['p95_ms']}ms "
        f"p99={summary['p99_ms']}ms max={summary['max_ms']}ms"
    )
    print(json.dumps(summary))
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
