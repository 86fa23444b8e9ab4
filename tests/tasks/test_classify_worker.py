"""Through a real worker process with the real model on a real Redis."""

from datetime import UTC
from datetime import datetime

import pytest

from classifier.labels import LABELS
from storage.db import session
from storage.jobs import as_utc
from storage.models import Job
from tests.conftest import wait_for

MESSAGES = [
    # A first-person plea. In HumAID's train.tsv only 11 of 170 tweets with
    # "trapped" are labelled requests_or_urgent_needs (65 are rescue
    # efforts), and the model files a third-person report ("family of five
    # trapped on a roof, send a boat") under other_relevant_information.
    (
        "We are trapped on the roof, water rising, please send help",
        "requests_or_urgent_needs",
    ),
    (
        "Three people confirmed dead after the bridge collapsed in the earthquake",
        "injured_or_dead_people",
    ),
    (
        "Power lines down and the main road to the hospital is washed away",
        "infrastructure_and_utility_damage",
    ),
]


def poll(client, headers, job_id):
    return client.get(f"/v1/classifications/{job_id}", headers=headers).get_json()


def finished(client, headers, job_ids):
    jobs = [poll(client, headers, job_id) for job_id in job_ids]
    if all(job["status"] in ("succeeded", "failed") for job in jobs):
        return jobs
    return None


@pytest.fixture
def any_backend(any_database_url):
    """The end-to-end test runs on every database backend available."""
    return any_database_url


@pytest.fixture
def database_url(request, tmp_path):
    """Every backend for the end-to-end test; SQLite for the rest.

    The ordering tests are about the broker, not the database.
    """
    if "any_backend" in request.fixturenames:
        return request.getfixturevalue("any_backend")
    return f"sqlite:///{tmp_path / 'test.db'}"


def test_submit_runs_through_worker_and_poll_returns_result(
    any_backend, client, make_key, start_worker
):
    """HTTP submit -> queue -> real worker with the real model -> result on poll."""
    start_worker()
    headers = make_key.headers()
    ids = [
        client.post(
            "/v1/classifications", json={"text": text}, headers=headers
        ).get_json()["id"]
        for text, _ in MESSAGES
    ]
    ids.append(
        client.post(
            "/v1/emergency", json={"text": MESSAGES[0][0]}, headers=headers
        ).get_json()["id"]
    )

    jobs = wait_for(
        lambda: finished(client, headers, ids),
        timeout=120,
        interval=0.3,
        message="jobs",
    )

    for job in jobs:
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert set(result["scores"]) == set(LABELS)
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert result["category"] == max(result["scores"], key=result["scores"].get)
        assert result["confidence"] == pytest.approx(
            result["scores"][result["category"]]
        )
        assert result["model_version"].startswith("minilm-humaid-")
        assert result["truncated"] is False
        assert job["started_at"] <= job["finished_at"]
        assert job["error"] is None
    assert [job["result"]["category"] for job in jobs[:3]] == [
        label for _, label in MESSAGES
    ]
    assert jobs[3]["queue"] == "emergency"
    assert jobs[3]["result"]["scores"] == pytest.approx(
        jobs[0]["result"]["scores"], abs=1e-5
    )


def test_waiting_emergency_jobs_all_run_before_waiting_standard_backlog(
    app, client, make_key, start_worker
):
    """A worker on both queues takes every waiting emergency job before standard.

    The backlog is built while no worker runs, with the emergency jobs sent
    last, so that round-robin or FIFO polling would interleave them.
    """
    headers = make_key.headers()
    standard = [
        client.post(
            "/v1/classifications",
            json={"text": f"Shelter update number {n}: cots and water available"},
            headers=headers,
        ).get_json()["id"]
        for n in range(60)
    ]
    emergency = [
        client.post(
            "/v1/emergency",
            json={"text": f"Urgent: person {n} trapped under rubble, need rescue now"},
            headers=headers,
        ).get_json()["id"]
        for n in range(10)
    ]

    start_worker("emergency,standard")
    wait_for(
        lambda: finished(client, headers, standard + emergency),
        timeout=180,
        interval=0.5,
        message="backlog",
    )

    with app.app_context():
        rows = {job.id: job for job in session.query(Job).all()}
    assert all(job.status == "succeeded" for job in rows.values())
    last_emergency = max(as_utc(rows[i].finished_at) for i in emergency)
    first_standard = min(as_utc(rows[i].started_at) for i in standard)
    assert last_emergency <= first_standard, (
        f"an emergency finished at {last_emergency}, "
        f"after standard work began at {first_standard}"
    )


def test_emergency_arriving_mid_backlog_jumps_the_standard_queue(
    app, client, make_key, start_worker
):
    """Emergencies sent while standard work drains start before waiting standard."""
    headers = make_key.headers()
    standard = [
        client.post(
            "/v1/classifications",
            json={"text": f"Road report {n}: minor debris on the highway"},
            headers=headers,
        ).get_json()["id"]
        for n in range(150)
    ]
    # Small passes, so the backlog drains over many claims and there is a
    # queue for the emergencies to jump (a pass of the default 256 takes it
    # all at once).
    start_worker("emergency,standard", settings={"WORKER_BATCH_MAX_JOBS": 16})
    wait_for(
        lambda: poll(client, headers, standard[5])["status"] == "succeeded",
        timeout=120,
        interval=0.2,
        message="standard work to begin",
    )
    emergency, queued_at = [], {}
    for n in range(5):
        job_id = client.post(
            "/v1/emergency",
            json={"text": f"Gas leak and fire at building {n}, people inside"},
            headers=headers,
        ).get_json()["id"]
        # The 202 comes after the publish: from here the message is waiting.
        queued_at[job_id] = datetime.now(UTC)
        emergency.append(job_id)
    wait_for(
        lambda: finished(client, headers, standard + emergency),
        timeout=180,
        interval=0.5,
        message="backlog",
    )

    with app.app_context():
        rows = {job.id: job for job in session.query(Job).all()}
    standard_starts = [as_utc(rows[i].started_at) for i in standard]
    assert max(standard_starts) > max(as_utc(rows[i].started_at) for i in emergency), (
        "the backlog drained before the emergencies were sent"
    )
    for job_id in emergency:
        sent, began = queued_at[job_id], as_utc(rows[job_id].started_at)
        # Standard claims (a gathered batch shares one start time) made while
        # this emergency waited in its queue. At most one may squeeze in: the
        # one whose last look at the emergency queue came an instant before.
        overtaking = {t for t in standard_starts if sent < t < began}
        assert len(overtaking) <= 1, (
            f"{len(overtaking)} standard claims started ahead of a waiting emergency"
        )


def test_time_limit_spent_loading_the_model_does_not_fail_the_job(
    client, make_key, start_worker
):
    """A job whose soft limit runs out while the model loads is run again, warm.

    The soft limit is 1 s and the preload is off, so the first run always
    spends its time waiting for the model (several seconds to load).
    """
    start_worker(
        settings={
            "TASK_SOFT_TIME_LIMIT_SECONDS": 1,
            "TASK_TIME_LIMIT_SECONDS": 50,
            "PRELOAD_MODEL": 0,
        }
    )
    headers = make_key.headers()
    job_id = client.post(
        "/v1/emergency", json={"text": MESSAGES[1][0]}, headers=headers
    ).get_json()["id"]

    (job,) = wait_for(
        lambda: finished(client, headers, [job_id]), timeout=120, message="the job"
    )

    assert job["status"] == "succeeded", job
    assert job["result"]["category"] == MESSAGES[1][1]
