"""The watch through real processes: a worker, Celery Beat, request ids."""

import json
import os
import signal
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from storage.db import session
from storage.monitoring import Alert
from storage.monitoring import InferenceBatch
from storage.monitoring import RetentionRun
from tests.conftest import ROOT
from tests.conftest import service_env
from tests.conftest import wait_for
from tests.monitoring.conftest import ATTACKER
from tests.monitoring.conftest import fail_logins

TEXT = "Flood water entering the school gym on 5th street, 40 people inside"


def _metric(text, name, labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no sample {name}{labels}")


def test_request_id_reaches_the_worker_log_and_inference_metrics(
    app, client, make_key, start_worker
):
    """A job's worker lines carry its request's id; its batch shows in /metrics."""
    worker = start_worker(settings={"LOG_FORMAT": "json"})
    key = make_key("operator")
    response = client.post(
        "/v1/classifications",
        json={"text": TEXT},
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "req-4711"},
    )
    assert response.headers["X-Request-ID"] == "req-4711"
    job_id = response.get_json()["id"]

    def done_line():
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and "classify: done" in line:
                return json.loads(line)
        return None

    line = wait_for(done_line, timeout=90, interval=0.3, message="the job's log line")
    assert line["request_id"] == "req-4711"
    assert line["level"] == "INFO"
    log = worker.log_path.read_text(errors="replace")
    assert TEXT not in log
    assert key not in log and key.split("_", 2)[2] not in log
    with app.app_context():
        (batch,) = session.scalars(select(InferenceBatch)).all()
    assert (batch.queue, batch.batch_size) == ("standard", 1)
    page = client.get("/metrics", headers=make_key.headers("viewer")).get_data(
        as_text=True
    )
    labels = {"queue": "standard"}
    assert _metric(page, "aicrisisalert_inference_latency_seconds_count", labels) == 1
    assert _metric(page, "aicrisisalert_inference_batch_size_sum", labels) == 1
    assert _metric(page, "aicrisisalert_jobs", {"status": "succeeded"}) == 1
    assert (
        client.get(
            f"/v1/classifications/{job_id}", headers={"Authorization": f"Bearer {key}"}
        ).get_json()["status"]
        == "succeeded"
    )


@pytest.fixture
def beat(redis_url, database_url, tmp_path):
    """Start a real ``celery beat`` with short intervals; stop it at teardown."""
    started = []

    def start(**settings):
        env = service_env(redis_url, database_url, **settings)
        log = open(tmp_path / "beat.log", "ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "beat",
                "--schedule",
                str(tmp_path / "beat-schedule"),
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        log.close()


def test_beat_runs_the_checks_and_retention_on_the_maintenance_queue(
    app, client, make_key, start_worker, beat
):
    """Beat schedules anomaly.check and retention; a real worker runs them."""
    schedule = {"ANOMALY_CHECK_INTERVAL_SECONDS": 2, "RETENTION_INTERVAL_SECONDS": 2}
    headers = make_key.headers("operator")
    fail_logins(client, 11)
    start_worker("maintenance", settings=schedule)
    beat(**schedule)

    def alerts():
        with app.app_context():
            session.expire_all()
            return session.scalars(select(Alert)).all()

    (alert,) = wait_for(alerts, timeout=60, interval=0.5, message="an alert")
    assert (alert.type, alert.subject) == ("failed_auth_rate", f"address:{ATTACKER}")

    # The alert's row is stored before its response blocks the address, so
    # the block may land a moment after the alert is seen.
    def blocked():
        response = client.get(
            "/v1/classifications?ids=x",
            headers=headers,
            environ_base={"REMOTE_ADDR": ATTACKER},
        )
        return response.status_code == 403

    assert wait_for(blocked, timeout=10, interval=0.2, message="the block")

    def runs():
        with app.app_context():
            session.expire_all()
            found = session.scalars(
                select(RetentionRun).where(RetentionRun.status == "finished")
            ).all()
            return found if len(found) >= 2 else None

    assert wait_for(runs, timeout=30, interval=0.5, message="two retention runs")
    # Later checks extend the one alert instead of raising new ones.
    wait_for(
        lambda: alerts()[0].occurrences >= 3,
        timeout=30,
        interval=0.5,
        message="repeated checks",
    )
    assert len(alerts()) == 1
