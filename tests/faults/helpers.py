"""Helpers of the fault tests: submit, read rows, read worker logs."""

from storage.db import session
from storage.models import Job
from tests.conftest import wait_for

FINAL = ("succeeded", "failed")


def submit(client, headers, text, *, emergency=False):
    """Submit one message; return the job id (asserting the 202)."""
    path = "/v1/emergency" if emergency else "/v1/classifications"
    response = client.post(path, json={"text": text}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def rows(app, job_ids=None):
    """Return the job rows (all, or those named) as fresh objects by id."""
    with app.app_context():
        query = session.query(Job)
        if job_ids is not None:
            query = query.filter(Job.id.in_(job_ids))
        return {job.id: job for job in query.all()}


def status(app, job_id):
    """Return one job's status as the database has it now."""
    return rows(app, [job_id])[job_id].status


def logged_completions(workers, job_ids, *, timeout=15):
    """Return each job's completion count in ``workers``' logs, in order.

    A worker logs "classify: done" just after it commits the results (and
    after a Redis write or two), so a test that saw the rows finished may
    read the log a moment before that line is there: wait for every job's
    first line, then count.
    """
    wait_for(
        lambda: all(completions(workers, job_id) for job_id in job_ids),
        timeout=timeout,
        interval=0.1,
        message="the completion lines in the worker logs",
    )
    return [completions(workers, job_id) for job_id in job_ids]


def wait_finished(app, job_ids, *, timeout):
    """Wait until every job named is succeeded or failed; return the rows."""

    def done():
        found = rows(app, job_ids)
        if len(found) == len(job_ids) and all(
            job.status in FINAL for job in found.values()
        ):
            return found
        return None

    return wait_for(done, timeout=timeout, interval=0.25, message="jobs to finish")


def wait_model_loaded(*workers, count=1, timeout=90):
    """Wait until each worker's log says its pool loaded the model ``count`` times."""
    for worker in workers:
        wait_for(
            lambda w=worker: log_count(w, "engine: loaded") >= count,
            timeout=timeout,
            message="the model to load",
        )


def log_count(worker, needle):
    """Count the lines of a worker's log that contain ``needle``."""
    text = worker.log_path.read_text(errors="replace")
    return sum(1 for line in text.splitlines() if needle in line)


def completions(workers, job_id):
    """Count the successful completions of ``job_id`` logged by ``workers``."""
    return sum(
        1
        for worker in workers
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if job_id in line and "classify: done" in line
    )
