"""A command-line client: ``python -m app.client submit FILE.tsv ...``.

Sends real messages from a labelled TSV through a running service, polls
until every job has finished, and prints throughput, latency percentiles
per queue and accuracy against the file's labels, ending with one JSON
line.

Receivers of webhooks check each delivery with :func:`verify_signature`
(re-exported from :mod:`security.signing`, which needs only the standard
library).
"""

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import requests
from tqdm import tqdm

from security.signing import InvalidSignature  # noqa: F401  (for receivers)
from security.signing import verify_signature  # noqa: F401  (for receivers)

_POLL_IDS = 100
_POLL_INTERVAL_SECONDS = 0.5
# A window is read at least this often while its oldest job is unfinished.
_WINDOW_EVERY_SECONDS = 2.0
_FINISHED = ("succeeded", "failed")


class Client:
    """A thin HTTP client of the API."""

    def __init__(self, url, key, *, timeout=10):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def submit(self, text, *, emergency=False, **fields):
        """Submit one message; return the response body (raises on non-202)."""
        path = "/v1/emergency" if emergency else "/v1/classifications"
        response = self.http.post(
            self.url + path, json={"text": text, **fields}, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def submit_batch(self, items):
        """Submit up to BATCH_MAX_ITEMS messages in one request.

        ``items`` are dicts with the fields of a single submit. Returns the
        job bodies in the items' order (raises on non-202).
        """
        response = self.http.post(
            self.url + "/v1/classifications/batch",
            json={"items": items},
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()["items"]

    def wait_finished(self, job_ids, *, timeout, interval=0.5, on_done=None):
        """Poll until every job has finished or ``timeout`` seconds pass.

        Jobs of one queue finish about in the order they were sent, so the
        results are collected in that order. A poll reads a window of the
        oldest ``_POLL_IDS`` jobs still unfinished; one that finds its
        whole window finished is followed at once by the next. When a job
        in the window is still running, the client waits ``interval`` and
        then asks for that one job alone, as often as it takes, and reads
        the window again once it has finished, or ``_WINDOW_EVERY_SECONDS``
        after the last window if it has not (another job may have finished
        first). A worker finishes a whole set of jobs at once, and a window
        read while its set runs would carry up to 100 unfinished jobs on
        every poll: on a 2,000-job run, 6,040 jobs were read for 2,000
        results, and that load fell on the same cores as the workers. The
        last result is seen within one interval of being stored.

        Returns ``(done, pending)``: the finished jobs by id, and the ids
        still unfinished. ``on_done`` is called once per finished job.
        """
        pending, done = list(job_ids), {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            window = pending[:_POLL_IDS]
            window_read = time.monotonic()
            found = {job["id"]: job for job in self.get_many(window)}
            waiting = []
            for job_id in window:
                job = found.get(job_id)
                if job is not None and job["status"] in _FINISHED:
                    done[job_id] = job
                    if on_done:
                        on_done(job)
                else:
                    waiting.append(job_id)
            pending = waiting + pending[len(window) :]
            if waiting:
                self._wait_for_one(
                    waiting[0],
                    interval=interval,
                    until=min(deadline, window_read + _WINDOW_EVERY_SECONDS),
                )
        return done, pending

    def _wait_for_one(self, job_id, *, interval, until):
        """Poll ``job_id`` alone every ``interval`` until it finishes or ``until``."""
        while True:
            time.sleep(interval)
            if time.monotonic() >= until:
                return
            jobs = self.get_many([job_id])
            if not jobs or jobs[0]["status"] in _FINISHED:
                return

    def get_many(self, job_ids):
        """Return the jobs for up to 100 ids."""
        response = self.http.get(
            self.url + "/v1/classifications",
            params={"ids": ",".join(job_ids)},
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()["items"]


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return round(ordered[index], 1)


def _latency_ms(job):
    created = datetime.fromisoformat(job["created_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - created).total_seconds() * 1000


def _read_rows(path, limit):
    from classifier.data import read_tsv

    return read_tsv(path, limit=limit)


def _submit_all(client, rows, emergency_share, concurrency, seed, batch=None):
    """Send every row; return ``(job id, gold label, queue)`` in row order.

    With ``batch``, standard messages go ``batch`` at a time through the
    batch endpoint; emergencies are always sent one by one (there is no
    emergency batch).
    """
    chooser = random.Random(seed)
    plan = [(row, chooser.random() < emergency_share) for row in rows]
    if batch:
        singles = [(index, item) for index, item in enumerate(plan) if item[1]]
        standard = [(index, item) for index, item in enumerate(plan) if not item[1]]
        units = [[entry] for entry in singles] + [
            standard[start : start + batch] for start in range(0, len(standard), batch)
        ]
    else:
        units = [[entry] for entry in enumerate(plan)]

    def send(unit):
        if len(unit) == 1 and (unit[0][1][1] or not batch):
            index, (row, emergency) = unit[0]
            bodies = [client.submit(row[1], emergency=emergency, source="client")]
        else:
            bodies = client.submit_batch(
                [{"text": row[1], "source": "client"} for _, (row, _) in unit]
            )
        return [
            (index, (body["id"], row[2], body["queue"]))
            for (index, (row, _)), body in zip(unit, bodies, strict=True)
        ]

    with (
        ThreadPoolExecutor(concurrency) as pool,
        tqdm(total=len(plan), desc="submit", unit="job", file=sys.stderr) as bar,
    ):
        submitted = [None] * len(plan)
        for results in pool.map(send, units):
            for index, result in results:
                submitted[index] = result
            bar.update(len(results))
    return submitted


def _poll_all(client, job_ids, timeout_seconds):
    with tqdm(total=len(job_ids), desc="classify", unit="job", file=sys.stderr) as bar:
        return client.wait_finished(
            job_ids,
            timeout=timeout_seconds,
            interval=_POLL_INTERVAL_SECONDS,
            on_done=lambda _job: bar.update(),
        )


def run_submit(args):
    """Send the file's messages, wait for the results and report."""
    from classifier.metrics import score

    rows = _read_rows(args.file, args.limit)
    client = Client(args.url, args.key)
    started = time.monotonic()
    submitted = _submit_all(
        client, rows, args.emergency_share, args.concurrency, args.seed, args.batch
    )
    submit_seconds = time.monotonic() - started
    done, pending = _poll_all(client, [s[0] for s in submitted], args.timeout)
    elapsed = time.monotonic() - started

    succeeded = [
        (s, done[s[0]])
        for s in submitted
        if done.get(s[0], {}).get("status") == "succeeded"
    ]
    gold = [s[1] for s, _ in succeeded]
    predicted = [job["result"]["category"] for _, job in succeeded]
    confidences = [job["result"]["confidence"] for _, job in succeeded]
    report = score(gold, predicted, confidences) if succeeded else {}
    latency = {}
    for queue in ("emergency", "standard"):
        values = [_latency_ms(job) for s, job in succeeded if s[2] == queue]
        latency[queue] = {
            "n": len(values),
            "p50_ms": _percentile(values, 0.50),
            "p95_ms": _percentile(values, 0.95),
            "p99_ms": _percentile(values, 0.99),
        }
    summary = {
        "submitted": len(submitted),
        "succeeded": len(succeeded),
        "failed": sum(1 for job in done.values() if job["status"] == "failed"),
        "unfinished": len(pending),
        "seconds": round(elapsed, 2),
        "submit_per_second": round(len(submitted) / submit_seconds, 1),
        "throughput_per_second": round(len(done) / elapsed, 1),
        "latency": latency,
        "accuracy": report.get("accuracy"),
        "weighted_f1": report.get("weighted_f1"),
        "macro_f1": report.get("macro_f1"),
    }
    for queue, figures in latency.items():
        print(
            f"{queue:<10} n={figures['n']:<5} p50={figures['p50_ms']}ms "
            f"p95={figures['p95_ms']}ms p99={figures['p99_ms']}ms"
        )
    print(
        f"throughput={summary['throughput_per_second']}/s "
        f"accuracy={summary['accuracy']} "
        f"weighted_f1={summary['weighted_f1']} unfinished={summary['unfinished']}"
    )
    print(json.dumps(summary))
    return 0 if not pending and summary["failed"] == 0 else 1


def main(argv=None):
    """Parse the command line and run a subcommand."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser(
        "submit", help="classify a labelled TSV through the service"
    )
    submit.add_argument("file")
    submit.add_argument("--limit", type=int, default=500)
    submit.add_argument("--emergency-share", type=float, default=0.0)
    submit.add_argument(
        "--url", default=os.environ.get("AICRISISALERT_URL", "http://127.0.0.1:8000")
    )
    submit.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    submit.add_argument("--concurrency", type=int, default=8)
    submit.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for results"
    )
    submit.add_argument("--seed", type=int, default=7)
    submit.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="N",
        help="send standard messages N per request (POST /v1/classifications/batch)",
    )
    args = parser.parse_args(argv)
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be at least 1")
    if not args.key:
        parser.error("give --key or set AICRISISALERT_KEY")
    return run_submit(args)


if __name__ == "__main__":
    sys.exit(main())
