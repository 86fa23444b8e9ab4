"""Worker-side batching, through real worker processes on a real Redis."""

import json
import re
import time

import pytest
from sqlalchemy import select

from classifier.data import read_tsv
from classifier.engine import Engine
from storage.db import session
from storage.jobs import as_utc
from storage.models import Job
from storage.monitoring import InferenceBatch
from tasks.batching import backlog_target
from tests.conftest import HUMAID_DIR
from tests.conftest import wait_for

FINISHED = ("succeeded", "failed")


@pytest.fixture(scope="module")
def tweets():
    return [text for _, text, _ in read_tsv(HUMAID_DIR / "test.tsv", limit=120)]


def _submit(client, headers, text, path="/v1/classifications"):
    response = client.post(path, json={"text": text}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def _jobs(app, ids):
    with app.app_context():
        rows = {job.id: job for job in session.scalars(select(Job)).all()}
        session.expunge_all()
    return [rows[job_id] for job_id in ids]


def _all_finished(app, ids):
    jobs = _jobs(app, ids)
    return jobs if all(job.status in FINISHED for job in jobs) else None


def _batch_sizes(app):
    with app.app_context():
        return [row.batch_size for row in session.scalars(select(InferenceBatch))]


def _logged_batch_sizes(worker):
    text = worker.log_path.read_text(errors="replace")
    return [int(size) for size in re.findall(r"classify: done batch_size=(\d+)", text)]


def test_waiting_single_submits_run_in_batches_equal_to_one_by_one(
    app, client, make_key, start_worker, tweets
):
    """120 single submits waiting for a worker run in passes of up to 64 jobs.

    Each message holds one job, so every batch over 1 was gathered from the
    broker. The stored scores equal the engine's run one text at a time,
    and every job ran exactly once (the batch sizes add up to 120).
    """
    headers = make_key.headers()
    ids = [_submit(client, headers, text) for text in tweets]
    worker = start_worker("standard", settings={"WORKER_BATCH_MAX_JOBS": 64})

    jobs = wait_for(
        lambda: _all_finished(app, ids), timeout=180, interval=0.5, message="jobs"
    )

    assert {job.status for job in jobs} == {"succeeded"}
    sizes = _batch_sizes(app)
    assert sum(sizes) == len(ids)
    assert max(sizes) == 64
    assert sorted(_logged_batch_sizes(worker)) == sorted(sizes)
    engine = Engine(threads=1)
    for job, text in zip(jobs, tweets, strict=True):
        (alone,) = engine.classify([text], batch_size=1)
        assert job.category == alone["category"]
        assert job.scores == pytest.approx(alone["scores"], abs=1e-5)


def test_backlog_target_takes_a_share_between_the_floor_and_the_cap():
    """A quarter of the estimated backlog, never under the floor or over the cap."""

    def target(held, messages, waiting):
        return backlog_target(
            held=held,
            messages=messages,
            waiting=waiting,
            max_jobs=128,
            backlog_max_jobs=512,
            share=4,
        )

    # 4 messages of 32 held, 60 more like them waiting: 2,048 jobs in all.
    assert target(128, 4, 60) == 512
    # 1,024 jobs in all: a quarter of them.
    assert target(128, 4, 28) == 256
    # A shallow backlog never lowers the target under the floor.
    assert target(128, 4, 2) == 128
    # Single-job messages: the waiting jobs are counted as single jobs.
    assert target(100, 100, 900) == 250
    # Nothing held yet, or a cap not above the floor: the floor.
    assert target(0, 0, 5000) == 128
    assert (
        backlog_target(
            held=8, messages=1, waiting=999, max_jobs=64, backlog_max_jobs=64, share=4
        )
        == 64
    )


@pytest.mark.parametrize(
    ("queues", "gathers_past_floor"),
    [("standard", True), ("emergency,standard", False)],
)
def test_deep_backlog_is_gathered_in_bigger_sets_only_without_emergency(
    app, client, make_key, start_worker, tweets, queues, gathers_past_floor
):
    """A standard-only worker takes a share of a deep backlog per gather.

    120 single submits wait; the floor is 8 jobs, the cap 64 and the share
    a half. A worker on ``standard`` alone gathers more than 8 at first and
    less as the backlog drains; a worker that also serves emergencies never
    gathers past the floor, so an emergency never waits behind a long pass.
    Every job runs exactly once either way.
    """
    headers = make_key.headers()
    ids = [_submit(client, headers, text) for text in tweets]
    settings = {
        "WORKER_BATCH_MAX_JOBS": 8,
        "WORKER_BATCH_BACKLOG_MAX_JOBS": 64,
        "WORKER_BATCH_BACKLOG_SHARE": 2,
    }
    worker = start_worker(queues, settings=settings)

    jobs = wait_for(
        lambda: _all_finished(app, ids), timeout=180, interval=0.5, message="jobs"
    )

    assert {job.status for job in jobs} == {"succeeded"}
    sizes = _logged_batch_sizes(worker)
    assert sum(sizes) == len(ids)
    if gathers_past_floor:
        assert 8 < max(sizes) <= 64, sizes
        assert sizes[0] > 8, sizes
        assert sizes[-1] <= 16, sizes
    else:
        assert max(sizes) <= 8, sizes


def test_lone_job_waits_at_most_the_flush_wait_and_emergency_not_at_all(
    app, client, make_key, start_worker, tweets
):
    """With a 400 ms flush wait a lone standard job starts after about 400 ms.

    A lone emergency on the same worker starts at once, and an emergency
    sent while a standard task waits for company ends the wait and runs
    first, in a pass of its own.
    """
    headers = make_key.headers()
    worker = start_worker(settings={"WORKER_BATCH_WAIT_MS": 400})
    warm = _submit(client, headers, tweets[0], "/v1/emergency")
    wait_for(lambda: _all_finished(app, [warm]), timeout=120, message="warm-up")

    lone = _submit(client, headers, tweets[1])
    (job,) = wait_for(lambda: _all_finished(app, [lone]), timeout=30, message="lone")
    urgent = _submit(client, headers, tweets[2], "/v1/emergency")
    (fast,) = wait_for(lambda: _all_finished(app, [urgent]), timeout=30, message="1")

    standard = _submit(client, headers, tweets[3])
    time.sleep(0.1)
    emergency = _submit(client, headers, tweets[4], "/v1/emergency")
    waited, jumped = wait_for(
        lambda: _all_finished(app, [standard, emergency]), timeout=30, message="pair"
    )

    assert job.status == "succeeded"
    assert 380 <= job.queue_ms < 400 + 1500, job.queue_ms
    assert fast.queue_ms < 300, fast.queue_ms
    assert as_utc(jumped.finished_at) <= as_utc(waited.started_at)
    assert waited.queue_ms < 400 + 1500
    assert jumped.queue_ms < 300, jumped.queue_ms
    assert _logged_batch_sizes(worker)[-2:] == [1, 1]


def test_gathered_messages_survive_a_killed_worker(
    app, client, make_key, start_worker, tweets
):
    """A worker killed mid-backlog loses no gathered job and runs none twice.

    Its unacknowledged messages (the one Celery gave it and those it took
    from the queue) return after the visibility timeout to a new worker;
    the batch sizes add up to exactly the number of jobs.
    """
    headers = make_key.headers()
    ids = [_submit(client, headers, text) for text in tweets]
    settings = {"WORKER_BATCH_MAX_JOBS": 32, "VISIBILITY_TIMEOUT_SECONDS": 3}
    first = start_worker("standard", settings=settings)
    wait_for(lambda: _batch_sizes(app), timeout=120, message="the first batch")
    first.kill()
    assert sum(_batch_sizes(app)) < len(ids), "the backlog finished before the kill"

    start_worker("standard", settings=settings)
    jobs = wait_for(
        lambda: _all_finished(app, ids), timeout=180, interval=0.5, message="jobs"
    )

    assert {job.status for job in jobs} == {"succeeded"}
    assert sum(_batch_sizes(app)) == len(ids)
    assert max(job.attempts for job in jobs) <= 2


def test_client_batch_option_sends_batches_and_gets_every_result(
    app, make_key, start_worker, capsys
):
    """``app.client submit --batch 25`` sends standard items 25 a request.

    Emergencies go one by one over HTTP, and every job finishes.
    """
    from app.client import main
    from storage.monitoring import RequestLog
    from tests.conftest import LiveServer

    start_worker()
    key = make_key("operator")
    with LiveServer(app) as server:
        code = main(
            [
                "submit",
                str(HUMAID_DIR / "test.tsv"),
                "--limit",
                "60",
                "--batch",
                "25",
                "--emergency-share",
                "0.2",
                "--url",
                server.url,
                "--key",
                key,
                "--timeout",
                "120",
            ]
        )

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert (summary["submitted"], summary["succeeded"]) == (60, 60)
    emergencies = summary["latency"]["emergency"]["n"]
    assert 0 < emergencies < 60
    with app.app_context():
        endpoints = [
            row.endpoint
            for row in session.scalars(select(RequestLog))
            if row.endpoint and row.endpoint.startswith("jobs.submit")
        ]
    batches = -(-(60 - emergencies) // 25)
    assert endpoints.count("jobs.submit_batch") == batches
    assert endpoints.count("jobs.submit_emergency") == emergencies
    assert "jobs.submit" not in endpoints
