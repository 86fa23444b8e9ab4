"""Emergency latency while a standard backlog drains: ``python -m bench.priority``.

    python -m bench.priority --url http://127.0.0.1:8000 --key $KEY --backlog 10000

First, on the idle service, sends --emergencies emergency messages one
at a time and measures each from submit to result (the server's
created_at to finished_at). Then it queues --backlog standard jobs through
the batch endpoint and, while they drain, sends the same number of
emergencies again. Goals: loaded p99 <= 2 x idle p99, and every emergency
done before any of the standard jobs that were waiting when it arrived
(created, not yet started): the count of such standard jobs that finished
first must be 0 for every emergency. Standard jobs that a standard worker
claims while an emergency is on its way to the emergency worker start
before it but finish seconds after it (a standard worker runs sets of up
to 512 jobs); that count is printed too, for information. The last line
printed is JSON.
"""

import argparse
import json
import os
import sys
import time
from datetime import datetime

from app.client import Client
from classifier.data import data_dir
from classifier.data import read_tsv

GOAL_P99_FACTOR = 2.0


def _at(value):
    return datetime.fromisoformat(value) if value else None


def _wait(client, ids, timeout):
    done, pending = client.wait_finished(ids, timeout=timeout, interval=0.2)
    if pending:
        raise SystemExit(f"priority: {len(pending)} jobs unfinished after {timeout}s")
    return [done[job_id] for job_id in ids]


def _latency_ms(job):
    return (_at(job["finished_at"]) - _at(job["created_at"])).total_seconds() * 1000


def _p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def emergencies(client, texts, *, count, spacing, timeout):
    """Send ``count`` emergencies ``spacing`` s apart; return their finished jobs."""
    ids = []
    for n in range(count):
        ids.append(client.submit(texts[n % len(texts)], emergency=True)["id"])
        time.sleep(spacing)
    return _wait(client, ids, timeout)


def overtaken(emergency_jobs, standard_jobs):
    """Count, per emergency, the waiting standard jobs that came first.

    A standard job was waiting at an emergency's arrival when it was
    created before it and started after it. Returns one ``(started first,
    finished first)`` pair of counts per emergency.
    """
    standard = [
        (_at(job["created_at"]), _at(job["started_at"]), _at(job["finished_at"]))
        for job in standard_jobs
    ]
    counts = []
    for job in emergency_jobs:
        arrived, began = _at(job["created_at"]), _at(job["started_at"])
        finished = _at(job["finished_at"])
        waiting = [
            (started, done)
            for created, started, done in standard
            if created < arrived < started
        ]
        counts.append(
            (
                sum(1 for started, _ in waiting if started < began),
                sum(1 for _, done in waiting if done < finished),
            )
        )
    return counts


def main(argv=None):
    """Measure idle and loaded emergency latency and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AICRISISALERT_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--emergencies", type=int, default=20)
    parser.add_argument(
        "--spacing", type=float, default=1.0, help="seconds between emergencies"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set AICRISISALERT_KEY")

    rows = read_tsv(data_dir() / "test.tsv")
    urgent = [text for _, text, label in rows if label == "requests_or_urgent_needs"]
    texts = [text for _, text, _ in rows]
    client = Client(args.url, args.key, timeout=60)

    idle = emergencies(
        client,
        urgent,
        count=args.emergencies,
        spacing=args.spacing,
        timeout=args.timeout,
    )
    standard_ids = []
    for start in range(0, args.backlog, 200):
        items = [
            {"text": texts[(start + n) % len(texts)], "source": "bench"}
            for n in range(min(200, args.backlog - start))
        ]
        standard_ids += [job["id"] for job in client.submit_batch(items)]
    loaded = emergencies(
        client,
        urgent,
        count=args.emergencies,
        spacing=args.spacing,
        timeout=args.timeout,
    )
    standard = _wait(client, standard_ids, args.timeout)

    idle_p99 = _p99([_latency_ms(job) for job in idle])
    loaded_p99 = _p99([_latency_ms(job) for job in loaded])
    started_first, finished_first = zip(*overtaken(loaded, standard), strict=True)
    still_waiting = sum(
        1
        for job in loaded
        if any(_at(s["started_at"]) > _at(job["finished_at"]) for s in standard)
    )
    summary = {
        "backlog": len(standard),
        "emergencies": args.emergencies,
        "idle_p99_ms": round(idle_p99, 1),
        "loaded_p99_ms": round(loaded_p99, 1),
        "ratio": round(loaded_p99 / idle_p99, 2),
        "emergencies_sent_while_backlog_waited": still_waiting,
        "standard_finished_first_per_emergency_max": max(finished_first),
        "standard_started_first_per_emergency_max": max(started_first),
        "failed": sum(
            1 for job in idle + loaded + standard if job["status"] != "succeeded"
        ),
        "goal_p99_factor": GOAL_P99_FACTOR,
    }
    summary["goal_met"] = (
        summary["ratio"] <= GOAL_P99_FACTOR
        and summary["failed"] == 0
        and summary["standard_finished_first_per_emergency_max"] == 0
    )
    print(
        f"idle p99={summary['idle_p99_ms']}ms loaded p99={summary['loaded_p99_ms']}ms "
        f"ratio={summary['ratio']} "
        f"finished first max={summary['standard_finished_first_per_emergency_max']} "
        f"started first max={summary['standard_started_first_per_emergency_max']}"
    )
    print(json.dumps(summary))
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
