"""The submit benchmark's load generator, against gunicorn as it is deployed."""

import subprocess
import sys
import urllib.request

import pytest

from bench import api as bench_api
from tests.conftest import ROOT
from tests.conftest import free_port
from tests.conftest import service_env
from tests.conftest import wait_for

_LIMITS = '{"operator": "100000/hour;20000/minute"}'


def _answers(url):
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def gunicorn_url(app, redis_url, database_url, tmp_path):
    """The URL of a gunicorn (one worker) on the test database and Redis.

    ``app`` is asked for first so that the tables exist before gunicorn starts.
    """
    port = free_port()
    env = service_env(
        redis_url,
        database_url,
        RATELIMIT_BY_ROLE=_LIMITS,
        PORT=port,
        WEB_WORKERS=1,
        WEB_ACCESS_LOG="null",
    )
    log = open(tmp_path / "gunicorn.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:config.gunicorn"]
        + ["wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url) or process.poll() is not None, timeout=60)
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()[-2000:]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_load_generator_keeps_its_schedule_over_keep_alive(gunicorn_url, make_key):
    """100 submits at 100/s, each a 202, over a few kept-alive connections."""
    key = make_key("operator")
    texts = ["bridge collapsed near the school, people in the water"]

    latencies, statuses, late, opened = bench_api.run(
        gunicorn_url, key, rate=100, seconds=1, connections=8, texts=texts
    )

    assert statuses == [202] * 100
    assert all(latency is not None and latency >= 0 for latency in latencies)
    # Kept alive: far fewer connections than requests.
    assert 1 <= opened <= 8
    assert 0 <= late <= 100


def test_percentile_is_nearest_rank():
    """p50 of 1..100 is 50 or 51, p99 is 99, and nothing is None."""
    values = list(range(1, 101))

    assert bench_api.percentile(values, 0.50) in (50, 51)
    assert bench_api.percentile(values, 0.99) == 99
    assert bench_api.percentile([], 0.99) is None
