"""The in-process submit CPU benchmark, on the test database and Redis."""

import json
import subprocess
import sys

import redis

from tests.conftest import ROOT
from tests.conftest import service_env

_LIMITS = '{"operator": "100000/hour;20000/minute"}'


def test_submit_cpu_measures_accepted_submits_and_empties_the_queue(
    make_key, redis_url, database_url
):
    """Every submit is a 202, its CPU is measured, and the queue is left empty."""
    key = make_key("operator")
    env = service_env(redis_url, database_url, RATELIMIT_BY_ROLE=_LIMITS)

    done = subprocess.run(
        [sys.executable, "-m", "bench.submit_cpu", "--key", key, "--n", "30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["submits"] == 30
    assert summary["statuses"] == {"202": 30}
    assert summary["cpu_ms_per_submit"] > 0
    assert summary["wall_ms_per_submit"] > 0
    assert redis.Redis.from_url(f"{redis_url}/0").llen("standard") == 0
