"""Creating and reading jobs."""

from dataclasses import dataclass

from flask import request
from sqlalchemy import insert
from sqlalchemy import select

from security import signing
from storage import serialize
from storage.models import Job
from storage.models import JobCallback
from storage.models import new_id
from storage.models import utcnow


@dataclass(frozen=True)
class Created:
    """A job just queued: what the submit's answer and its checks need."""

    id: str
    input_flags: list | None
    # The callback's signing secret, shown once in the 202; None without one.
    callback_secret: str | None


# Every column of a new job row, so that all rows of one insert share keys.
_EMPTY_JOB = {column.key: None for column in Job.__table__.columns}


def create(session, *, items, queue, api_key_id):
    """Insert one queued job per item and commit; return ``Created`` in order.

    An item with a ``callback_url`` also gets a JobCallback row with a fresh
    secret, which its event is signed with.

    The rows go in as plain values, one multi-row insert per table: building
    Job objects for them and attaching those to the session cost about as
    much as the rest of a batch submit together.
    """
    now = utcnow()
    rows, callbacks, created = [], [], []
    for item in items:
        job_id = new_id()
        rows.append(
            {
                **_EMPTY_JOB,
                "id": job_id,
                "api_key_id": api_key_id,
                "queue": queue,
                "status": "queued",
                "text": item["text"],
                "source": item.get("source"),
                "location": item.get("location"),
                "created_at": now,
                "attempts": 0,
                "input_flags": item.get("input_flags"),
            }
        )
        secret = None
        if item.get("callback_url"):
            secret = signing.new_secret()
            callbacks.append(
                {"job_id": job_id, "url": item["callback_url"], "secret": secret}
            )
        created.append(Created(job_id, item.get("input_flags"), secret))
    session.execute(insert(Job.__table__), rows)
    if callbacks:
        session.execute(insert(JobCallback.__table__), callbacks)
    session.commit()
    return created


def get(session, *, job_id, owner_id=None):
    """Return the job with ``job_id``, or None; only ``owner_id``'s when given."""
    job = session.get(Job, job_id)
    if job is None or (owner_id is not None and job.api_key_id != owner_id):
        return None
    return job


# What a poll shows of a job: every column but the text and the input flags,
# read as plain rows. Loading whole Job objects (the text included) cost
# more than the rest of a bulk poll together.
_SHOWN_COLUMNS = tuple(
    column
    for column in Job.__table__.columns
    if column.key not in ("text", "input_flags")
)


def get_many(session, *, job_ids, owner_id=None):
    """Return the jobs among ``job_ids`` that exist, in the order asked.

    With ``owner_id``, only that key's jobs are returned. They are read-only
    rows with the columns a client sees (no text), not Job objects.
    """
    query = select(*_SHOWN_COLUMNS).where(Job.id.in_(job_ids))
    if owner_id is not None:
        query = query.where(Job.api_key_id == owner_id)
    by_id = {row.id: row for row in session.execute(query)}
    return [by_id[job_id] for job_id in job_ids if job_id in by_id]


def mark_unqueued(session, *, job_ids, reason):
    """Fail jobs whose message never reached the broker, so none waits forever."""
    from storage.jobs import fail

    jobs = session.scalars(select(Job).where(Job.id.in_(job_ids))).all()
    fail(session, jobs, reason)


def job_url(job_id):
    """Return the job's path, as ``url_for("jobs.get")`` builds it (cheaper)."""
    return request.script_root + serialize.job_path(job_id)


def to_json(job):
    """Return the job as the API shows it (``JobSchema``'s JSON values)."""
    return serialize.job_json(job, self_url=job_url(job.id))
