"""Creating and reading jobs."""

from sqlalchemy import select

from security import signing
from storage import serialize
from storage.models import Job
from storage.models import JobCallback


def create(session, *, items, queue, api_key_id):
    """Insert one queued job per item and commit; return the jobs in order.

    An item with a ``callback_url`` also gets a JobCallback with a fresh
    secret (``job.callback``), which its event is signed with.
    """
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
    for job, item in zip(jobs, items, strict=True):
        job.callback = None
        if item.get("callback_url"):
            job.callback = JobCallback(
                url=item["callback_url"], secret=signing.new_secret()
            )
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
    return serialize.to_dict(job, self_url=self_url)
