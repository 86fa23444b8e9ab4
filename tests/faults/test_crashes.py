"""Workers killed mid-job: every job ends succeeded once, none is lost or doubled.

Real worker processes on a real Redis; the test hook
FAULT_DELAY_BEFORE_INFERENCE_MS holds each claimed job long enough to kill
its worker mid-job.
"""

import os
import signal
import time

import pytest

import config
from tests.conftest import wait_for
from tests.faults.helpers import completions
from tests.faults.helpers import log_count
from tests.faults.helpers import logged_completions
from tests.faults.helpers import rows
from tests.faults.helpers import status
from tests.faults.helpers import submit
from tests.faults.helpers import wait_finished
from tests.faults.helpers import wait_model_loaded

pytestmark = pytest.mark.slow

TEXT = "Bridge on route {n} collapsed, cars in the river, send rescue boats"
KILL_MARKER = "zz-crash-test-zz"


def test_defaults_hand_a_dead_workers_job_on_within_a_minute():
    """Visibility timeout plus scan interval is under 60 s, above the hard limit."""
    defaults = config.DefaultConfig
    celery = config.celery_settings(config.load({}))
    options = celery["broker_transport_options"]

    assert defaults.VISIBILITY_TIMEOUT_SECONDS <= 60
    assert defaults.VISIBILITY_TIMEOUT_SECONDS > defaults.TASK_TIME_LIMIT_SECONDS
    assert options["visibility_timeout"] + options["unacked_restore_interval"] <= 60
    assert options["unacked_restore_throttle"] == 1


def test_pool_child_killed_mid_job_runs_it_again_once(
    app, client, make_key, start_worker
):
    """SIGKILL of the pool child: its job re-runs at once; each job succeeds once.

    One job a task (no gathering), so only the first job is in flight;
    a killed batch is tests/tasks/test_classify_batching.py's subject.
    """
    worker = start_worker(
        settings={"FAULT_DELAY_BEFORE_INFERENCE_MS": 1500, "WORKER_BATCH_MAX_JOBS": 1}
    )
    wait_model_loaded(worker)
    headers = make_key.headers()
    ids = [submit(client, headers, TEXT.format(n=n)) for n in range(3)]
    wait_for(lambda: status(app, ids[0]) == "running", timeout=30, message="running")

    (child,) = worker.children()
    os.kill(child, signal.SIGKILL)
    found = wait_finished(app, ids, timeout=120)

    assert [found[i].status for i in ids] == ["succeeded"] * 3
    assert all(found[i].category for i in ids)
    assert [found[i].attempts for i in ids] == [2, 1, 1]
    assert logged_completions([worker], ids) == [1, 1, 1]
    assert len(rows(app)) == 3
    assert child not in worker.children()


def test_whole_worker_killed_mid_job_is_handed_to_another_within_a_minute(
    app, client, make_key, start_worker
):
    """SIGKILL of a whole worker: a live worker takes its job after the timeout.

    A 6 s visibility timeout stands in for the default 50 s so the test is
    quick; the scan interval is 1 s.
    """
    settings = {
        "FAULT_DELAY_BEFORE_INFERENCE_MS": 1500,
        "VISIBILITY_TIMEOUT_SECONDS": 6,
        "UNACKED_RESTORE_INTERVAL_SECONDS": 1,
    }
    workers = [start_worker(settings=settings) for _ in range(2)]
    wait_model_loaded(*workers)
    headers = make_key.headers()
    job_id = submit(client, headers, TEXT.format(n=1), emergency=True)
    wait_for(lambda: status(app, job_id) == "running", timeout=30, message="running")
    (holder,) = [w for w in workers if log_count(w, f"[{job_id}] received")]
    (survivor,) = [w for w in workers if w is not holder]

    holder.kill()
    killed_at = time.monotonic()
    found = wait_finished(app, [job_id], timeout=60)
    waited = time.monotonic() - killed_at

    job = found[job_id]
    assert job.status == "succeeded", job.error
    assert job.attempts == 2
    assert 5 < waited < 20, waited
    assert logged_completions([survivor], [job_id]) == [1]
    assert completions(workers, job_id) == 1
    assert len(rows(app)) == 1


def test_job_that_kills_its_worker_every_time_fails_after_three_attempts(
    app, client, make_key, start_worker
):
    """A message that crashes its worker is failed with a reason, not looped on."""
    # No preload: each pool process that replaces a killed one would
    # otherwise spend seconds loading a model it never uses.
    worker = start_worker(
        settings={"FAULT_KILL_MARKER": KILL_MARKER, "PRELOAD_MODEL": 0}
    )
    headers = make_key.headers()
    poison = submit(client, headers, f"Flooding downtown {KILL_MARKER} help")
    normal = submit(client, headers, TEXT.format(n=2))

    found = wait_finished(app, [poison, normal], timeout=120)

    assert found[poison].status == "failed"
    assert found[poison].error == (
        "gave up after 3 attempts: the worker running this job stopped each time"
    )
    assert found[poison].attempts == 3
    assert log_count(worker, "faults: kill marker found") == 3
    assert found[normal].status == "succeeded"
    time.sleep(2)
    assert log_count(worker, "faults: kill marker found") == 3
