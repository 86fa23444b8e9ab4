"""Job state changes shared by the API and the workers.

Each change is committed at once, so a job's row always tells the truth
about how far it got.
"""

from sqlalchemy import select

from storage import webhooks
from storage.models import Job
from storage.models import as_utc  # noqa: F401  (callers import it from here)
from storage.models import utcnow

# A job handed out this many times without finishing (its worker died
# each time) is failed instead of redelivered again.
MAX_ATTEMPTS = 3
_TOO_MANY_ATTEMPTS = (
    "gave up after %d attempts: the worker running this job stopped each time"
)


def claim(session, job_ids):
    """Mark the unfinished jobs among ``job_ids`` running; return them in order.

    Finished jobs are skipped, so a redelivered message does no work twice.
    A job that has used up its attempts is failed and skipped.
    """
    rows = session.scalars(select(Job).where(Job.id.in_(job_ids))).all()
    by_id = {job.id: job for job in rows}
    claimed = []
    given_up = []
    now = utcnow()
    for job_id in job_ids:
        job = by_id.get(job_id)
        if job is None or job.status in ("succeeded", "failed"):
            continue
        if job.attempts >= MAX_ATTEMPTS:
            job.status = "failed"
            job.finished_at = now
            job.error = _TOO_MANY_ATTEMPTS % job.attempts
            given_up.append(job)
            continue
        job.status = "running"
        job.started_at = now
        job.attempts += 1
        claimed.append(job)
    # Their deliveries are left to the dispatcher, a few seconds away.
    webhooks.record_job_events(session, given_up, now=now)
    session.commit()
    return claimed


def complete(session, jobs, results, *, inference_ms, review_threshold):
    """Store one engine result per job and mark the jobs succeeded.

    Returns:
        The ids of the webhook deliveries created in the same commit; the
        caller enqueues them (the dispatcher picks up any it does not).
    """
    now = utcnow()
    for job, result in zip(jobs, results, strict=True):
        job.status = "succeeded"
        job.finished_at = now
        job.category = result["category"]
        job.confidence = result["confidence"]
        job.scores = result["scores"]
        job.model_version = result["model_version"]
        job.truncated = result["truncated"]
        job.needs_review = result["confidence"] < review_threshold
        job.inference_ms = inference_ms
        job.queue_ms = (
            as_utc(job.started_at) - as_utc(job.created_at)
        ).total_seconds() * 1000
        job.error = None
    delivery_ids = webhooks.record_job_events(session, jobs, now=now)
    session.commit()
    return delivery_ids


def release(session, jobs):
    """Put running jobs back to queued without spending an attempt."""
    for job in jobs:
        job.status = "queued"
        job.started_at = None
        job.attempts = max(0, job.attempts - 1)
    session.commit()


def fail(session, jobs, reason):
    """Mark ``jobs`` failed with ``reason``; return new webhook delivery ids."""
    now = utcnow()
    for job in jobs:
        job.status = "failed"
        job.finished_at = now
        job.error = reason
    delivery_ids = webhooks.record_job_events(session, jobs, now=now)
    session.commit()
    return delivery_ids
