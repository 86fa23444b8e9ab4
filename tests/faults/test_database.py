"""The database locked while a worker writes a result: retried, nothing lost."""

import sqlite3
import time

import pytest

from tests.conftest import wait_for
from tests.faults.helpers import log_count
from tests.faults.helpers import status
from tests.faults.helpers import submit
from tests.faults.helpers import wait_finished
from tests.faults.helpers import wait_model_loaded

pytestmark = pytest.mark.slow

LOCK_SECONDS = 4


def test_result_write_on_a_locked_database_is_retried_and_kept(
    app, client, make_key, start_worker, database_url
):
    """An exclusive lock outlasting the busy timeout: the task retries, then stores.

    The worker's busy timeout is 1 s, so its write fails with "database is
    locked" while the test holds the lock for 4 s, and Celery's autoretry
    for OperationalError runs the task again.
    """
    worker = start_worker(
        settings={
            "SQLITE_BUSY_TIMEOUT_SECONDS": 1,
            "FAULT_DELAY_BEFORE_INFERENCE_MS": 500,
        }
    )
    wait_model_loaded(worker)
    headers = make_key.headers()
    job_id = submit(client, headers, "Hospital generator failing, patients at risk")
    wait_for(lambda: status(app, job_id) == "running", timeout=30, message="running")

    lock = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10)
    lock.execute("BEGIN EXCLUSIVE")
    time.sleep(LOCK_SECONDS)
    lock.rollback()
    lock.close()
    found = wait_finished(app, [job_id], timeout=90)

    job = found[job_id]
    assert job.status == "succeeded", job.error
    assert job.category and job.scores
    assert log_count(worker, "OperationalError") >= 1
    assert log_count(worker, "retry: Retry in") >= 1
    assert log_count(worker, "classify: done") == 1
