"""Redis stopped and restarted under a running service and worker.

Each test has a redis-server of its own, which it stops and starts again
on the same port; the app and the workers are pointed at it.
"""

import pytest
import redis

from tests.conftest import RedisServer
from tests.conftest import wait_for
from tests.faults.helpers import rows
from tests.faults.helpers import submit
from tests.faults.helpers import wait_finished
from tests.faults.helpers import wait_model_loaded

pytestmark = pytest.mark.slow

TEXT = "Water rising fast near the school on {n} street, people on roofs"


@pytest.fixture
def redis_server(request, tmp_path):
    """A Redis owned by this test (append-only when the test asks for it)."""
    server = RedisServer(
        tmp_path / "redis", appendonly=getattr(request, "param", False)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """Point the app, keys and workers at this test's Redis."""
    return redis_server.url


def _queued_messages(redis_server, queue="standard"):
    return redis.Redis(port=redis_server.port).llen(queue)


def test_redis_outage_is_503_and_the_service_recovers_without_restart(
    app, client, make_key, start_worker, redis_server
):
    """Down: 503 + Retry-After, /ready names redis, rows failed. Back: 202 and done."""
    worker = start_worker()
    wait_model_loaded(worker)
    headers = make_key.headers()
    before = submit(client, headers, TEXT.format(n=1))
    wait_finished(app, [before], timeout=60)

    redis_server.stop()
    down = [
        client.post(path, json={"text": TEXT.format(n=2)}, headers=headers)
        for path in ("/v1/classifications", "/v1/emergency")
    ]
    ready = client.get("/ready")

    for response in down:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.get_json()["error"]["code"] == "service_unavailable"
    assert ready.status_code == 503
    assert ready.get_json()["failing"] == ["redis"]
    unqueued = [job for job in rows(app).values() if job.id != before]
    assert [job.status for job in unqueued] == ["failed", "failed"]

    redis_server.start()
    statuses = []

    def accepted():
        response = client.post(
            "/v1/emergency", json={"text": TEXT.format(n=3)}, headers=headers
        )
        statuses.append(response.status_code)
        return response.get_json()["id"] if response.status_code == 202 else None

    after = wait_for(accepted, timeout=20, interval=0.5, message="a 202")
    found = wait_finished(app, [after], timeout=90)

    assert set(statuses) <= {202, 503}, statuses
    assert client.get("/ready").status_code == 200
    assert found[after].status == "succeeded", found[after].error
    assert all(job.status in ("succeeded", "failed") for job in rows(app).values())


@pytest.mark.parametrize("redis_server", [True], indirect=True)
def test_jobs_queued_before_an_append_only_restart_complete(
    app, client, make_key, start_worker, redis_server
):
    """With the append-only file on, messages survive a Redis restart."""
    headers = make_key.headers()
    ids = [submit(client, headers, TEXT.format(n=n)) for n in range(5)]
    assert _queued_messages(redis_server) == 5

    redis_server.stop()
    redis_server.start()
    assert _queued_messages(redis_server) == 5
    start_worker()
    found = wait_finished(app, ids, timeout=120)

    assert [found[i].status for i in ids] == ["succeeded"] * 5
    assert [found[i].attempts for i in ids] == [1] * 5


def test_sweeper_resends_jobs_whose_messages_a_restart_lost(
    app, client, make_key, start_worker, redis_server
):
    """Without the append-only file the queue is lost; the sweeper re-sends once."""
    from tasks.maintenance import sweep_queued

    headers = make_key.headers()
    ids = [submit(client, headers, TEXT.format(n=n)) for n in range(3)]
    redis_server.stop()
    redis_server.start()
    assert _queued_messages(redis_server) == 0

    app.config["SWEEP_QUEUED_AFTER_SECONDS"] = 0
    with app.app_context():
        first = sweep_queued.run()
        second = sweep_queued.run()
    start_worker()
    found = wait_finished(app, ids, timeout=120)

    assert first == {"resent": 3, "failed": 0}
    assert second == {"resent": 0, "failed": 0}
    assert [found[i].status for i in ids] == ["succeeded"] * 3
    assert [found[i].attempts for i in ids] == [1] * 3


def test_sweeper_fails_jobs_unfinished_past_the_limit(app, client, make_key):
    """A job unfinished past SWEEP_QUEUED_FAIL_AFTER_SECONDS is failed with why."""
    from tasks.maintenance import sweep_queued

    job_id = submit(client, make_key.headers(), TEXT.format(n=9))
    app.config["SWEEP_QUEUED_FAIL_AFTER_SECONDS"] = 0

    with app.app_context():
        summary = sweep_queued.run()

    job = rows(app)[job_id]
    assert summary == {"resent": 0, "failed": 1}
    assert job.status == "failed"
    assert job.error.startswith("never finished: its queue message was lost")
