"""Creating and reading jobs."""

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.orm import make_transient_to_detached

from security import signing
from storage import serialize
from storage.models import Job
from storage.models import JobCallback
from storage.models import new_id
from storage.models import utcnow


def create(session, *, items, queue, api_key_id):
    """Insert one queued job per item and commit; return the jobs in order.

    An item with a ``callback_url`` also gets a JobCallback with a fresh
    secret (``job.callback``), which its event is signed with.

    The rows go in as one multi-row insert per table rather than through
    the unit of work, which costs about three times the CPU for the same
    rows on the submit path. The jobs returned are then attached to the
    session as loaded, unchanged rows (no query), so a caller can still
    change and commit them (:func:`mark_unqueued`).
    """
    now = utcnow()
    jobs = []
    for item in items:
        job = Job(
            id=new_id(),
            queue=queue,
            status="queued",
            text=item["text"],
            source=item.get("source"),
            location=item.get("location"),
            input_flags=item.get("input_flags"),
            api_key_id=api_key_id,
            created_at=now,
            attempts=0,
        )
        job.callback = None
        if item.get("callback_url"):
            job.callback = JobCallback(
                job_id=job.id, url=item["callback_url"], secret=signing.new_secret()
            )
        jobs.append(job)
    # The tables, not the classes: an ORM bulk insert maps every key of every
    # row back through the class, which costs as much as it saves.
    session.execute(
        insert(Job.__table__), [_columns(job, _JOB_COLUMNS) for job in jobs]
    )
    callbacks = [job.callback for job in jobs if job.callback is not None]
    if callbacks:
        session.execute(
            insert(JobCallback.__table__),
            [_columns(cb, _CALLBACK_COLUMNS) for cb in callbacks],
        )
    session.commit()
    for job in jobs:
        _attach(session, job)
    return jobs


_JOB_COLUMNS = tuple(column.key for column in Job.__table__.columns)
_CALLBACK_COLUMNS = tuple(column.key for column in JobCallback.__table__.columns)


def _columns(row, names):
    return {name: getattr(row, name) for name in names}


def _attach(session, job):
    """Make ``job`` (and its callback) a loaded, clean row of ``session``."""
    for name in _JOB_COLUMNS:
        # Columns with no value given are None in the row just inserted.
        job.__dict__.setdefault(name, None)
    if job.callback is not None:
        make_transient_to_detached(job.callback)
        session.add(job.callback)
    make_transient_to_detached(job)
    session.add(job)


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
