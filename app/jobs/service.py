"""Creating and reading jobs."""

from sqlalchemy import select

from storage.jobs import as_utc
from storage.models import Job


def create(session, *, items, queue, api_key_id):
    """Insert one queued job per item and commit; return the jobs in order."""
    jobs = [
        Job(
            queue=queue,
            status="queued",
            text=item["text"],
            source=item.get("source"),
            location=item.get("location"),
            input_flags=item.get("input_flags"),
            api_key_id=api_key_id,
        )
        for item in items
    ]
    session.add_all(jobs)
    session.commit()
    return jobs


def get(session, *, job_id, owner_id=None):
    """Return the job with ``job_id``, or None; only ``owner_id``'s when given."""
    job = session.get(Job, job_id)
    if job is None or (owner_id is not None and job.api_key_id != owner_id):
        return None
    return job


def get_many(session, *, job_ids, owner_id=None):
    """Return the jobs among ``job_ids`` that exist, in the order asked.

    With ``owner_id``, only that key's jobs are returned.
    """
    query = select(Job).where(Job.id.in_(job_ids))
    if owner_id is not None:
        query = query.where(Job.api_key_id == owner_id)
    rows = session.scalars(query).all()
    by_id = {job.id: job for job in rows}
    return [by_id[job_id] for job_id in job_ids if job_id in by_id]


def mark_unqueued(session, *, jobs, reason):
    """Fail jobs whose message never reached the broker, so none waits forever."""
    from storage.jobs import fail

    fail(session, jobs, reason)


def to_dict(job, *, self_url):
    """Return the job in the shape of ``JobSchema``."""
    result = None
    if job.status == "succeeded":
        result = {
            "category": job.category,
            "confidence": job.confidence,
            "scores": job.scores,
            "model_version": job.model_version,
            "truncated": job.truncated,
            "needs_review": job.needs_review,
            "queue_ms": job.queue_ms,
            "inference_ms": job.inference_ms,
        }
    return {
        "id": job.id,
        "status": job.status,
        "queue": job.queue,
        "source": job.source,
        "location": job.location,
        "created_at": as_utc(job.created_at),
        "started_at": as_utc(job.started_at),
        "finished_at": as_utc(job.finished_at),
        "result": result,
        "error": job.error,
        "links": {"self": self_url},
    }
