"""Job state changes shared by the API and the workers.

Each change is committed at once, so a job's row always tells the truth
about how far it got.
"""

from datetime import timedelta

from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

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
_ABANDONED = "never finished: its queue message was lost and re-sending did not help"


def claim(session, job_ids, *, retries=0):
    """Mark the unfinished jobs among ``job_ids`` running; return them in order.

    Finished jobs are skipped, so a redelivered message does no work twice.
    A job that has used up its attempts is failed and skipped. ``retries``
    is the message's own retry count: each retry (a locked database, a
    cold start) was a clean hand-off that also claimed the job once, so
    only the claims beyond them count against MAX_ATTEMPTS, as deliveries
    whose worker died.
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
        if job.attempts - retries >= MAX_ATTEMPTS:
            job.status = "failed"
            job.finished_at = now
            job.error = _TOO_MANY_ATTEMPTS % (job.attempts - retries)
            given_up.append(job)
            continue
        claimed.append(job)
    if claimed:
        # One UPDATE for the pass rather than the unit of work's one a row;
        # the objects get the same values without being marked changed.
        session.execute(
            update(Job)
            .where(Job.id.in_([job.id for job in claimed]))
            .values(status="running", started_at=now, attempts=Job.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        for job in claimed:
            set_committed_value(job, "status", "running")
            set_committed_value(job, "started_at", now)
            set_committed_value(job, "attempts", job.attempts + 1)
    # Their deliveries are left to the dispatcher, a few seconds away.
    webhooks.record_job_events(session, given_up, now=now)
    session.commit()
    return claimed


# What complete() writes: one UPDATE run over every job of a pass.
_RESULT_COLUMNS = (
    "status",
    "finished_at",
    "category",
    "confidence",
    "scores",
    "model_version",
    "truncated",
    "needs_review",
    "inference_ms",
    "queue_ms",
    "error",
)
_STORE_RESULTS = (
    update(Job.__table__)
    .where(Job.__table__.c.id == bindparam("job_id"))
    .values({name: bindparam(f"new_{name}") for name in _RESULT_COLUMNS})
)


def complete(session, jobs, results, *, inference_ms, review_threshold):
    """Store one engine result per job and mark the jobs succeeded.

    The rows are written by one UPDATE statement run over the pass (an
    executemany), not through the session's unit of work, which cost a
    worker more than tokenising its texts. The job objects are given the
    same values as stored, without marking them changed, so the events
    recorded with them read the finished state.

    Returns:
        The ids of the webhook deliveries created in the same commit; the
        caller enqueues them (the dispatcher picks up any it does not).
    """
    now = utcnow()
    rows = []
    for job, result in zip(jobs, results, strict=True):
        waited = as_utc(job.started_at) - as_utc(job.created_at)
        values = {
            "status": "succeeded",
            "finished_at": now,
            "category": result["category"],
            "confidence": result["confidence"],
            "scores": result["scores"],
            "model_version": result["model_version"],
            "truncated": result["truncated"],
            "needs_review": result["confidence"] < review_threshold,
            "inference_ms": inference_ms,
            "queue_ms": waited.total_seconds() * 1000,
            "error": None,
        }
        for name, value in values.items():
            set_committed_value(job, name, value)
        rows.append({"job_id": job.id, **{f"new_{k}": v for k, v in values.items()}})
    if rows:
        session.execute(_STORE_RESULTS, rows)
    delivery_ids = webhooks.record_job_events(session, jobs, now=now)
    session.commit()
    return delivery_ids


def release(session, jobs):
    """Put running jobs back to queued before a retry of their message.

    The attempt stays counted: the retry's own count offsets it in
    :func:`claim`.
    """
    for job in jobs:
        job.status = "queued"
        job.started_at = None
    session.commit()


def stale_unfinished(session, *, older_than_seconds, limit, now=None):
    """Return up to ``limit`` jobs unfinished ``older_than_seconds`` after creation.

    Queued or running, oldest first (through the (status, created_at)
    index). A job that old has most likely lost its message: no live
    task runs longer than the hard time limit, and a dead worker's message
    is handed on within the visibility timeout.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_seconds)
    query = (
        select(Job)
        .where(Job.status.in_(("queued", "running")), Job.created_at < cutoff)
        .order_by(Job.created_at)
        .limit(limit)
    )
    return session.scalars(query).all()


def fail_abandoned(session, jobs):
    """Fail unfinished jobs whose message is given up on; return delivery ids."""
    return fail(session, jobs, _ABANDONED)


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
