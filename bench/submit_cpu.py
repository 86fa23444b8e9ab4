"""CPU time the API spends on one submit, in process: ``python -m bench.submit_cpu``.

    python -m bench.submit_cpu --key $KEY --n 2000 [--profile 30]

Builds the app from the environment's settings (the service's Redis, its
database, the limiter and the security headers on, exactly as gunicorn's
workers build it) and sends ``--n`` submits of real HumAID test tweets
through Flask's test client, one after another in one thread, after a
warm-up. It prints the CPU time (``time.process_time``) and the wall time
per submit; with ``--profile N`` it also prints the N costliest functions
by cumulative time (cProfile). No HTTP server is involved, so the figure
is the application's own cost, the part a gunicorn worker cannot avoid.
The broker queue is emptied afterwards. The last line printed is JSON.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time

from classifier.data import data_dir
from classifier.data import read_tsv

_PATH = "/v1/classifications"
_WARMUP = 200


def _submits(client, key, texts, count, offset=0):
    headers = {"Authorization": f"Bearer {key}"}
    statuses = {}
    for index in range(count):
        text = texts[(offset + index) % len(texts)]
        response = client.post(
            _PATH, json={"text": text, "source": "bench"}, headers=headers
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


def main(argv=None):
    """Measure and print the CPU per submit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--profile", type=int, default=0, help="functions to list")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set AICRISISALERT_KEY")

    from app import create_app
    from monitoring import requestlog

    app = create_app()
    client = app.test_client()
    texts = [row[1] for row in read_tsv(data_dir() / "test.tsv", limit=2000)]
    _submits(client, args.key, texts, _WARMUP)
    requestlog.flush()

    profiler = cProfile.Profile() if args.profile else None
    cpu_started, started = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    statuses = _submits(client, args.key, texts, args.n, offset=_WARMUP)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - cpu_started
    wall = time.perf_counter() - started
    requestlog.flush()

    celery = app.extensions["celery"]
    with celery.connection_for_write() as connection:
        connection.default_channel.client.delete("standard")

    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(
            args.profile
        )
        print(out.getvalue())
    summary = {
        "submits": args.n,
        "statuses": {str(k): v for k, v in statuses.items()},
        "cpu_ms_per_submit": round(1000 * cpu / args.n, 3),
        "wall_ms_per_submit": round(1000 * wall / args.n, 3),
        "profiled": bool(profiler),
    }
    print(json.dumps(summary))
    return 0 if set(statuses) == {202} else 1


if __name__ == "__main__":
    sys.exit(main())
