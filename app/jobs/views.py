"""Endpoints: submit to either queue, and poll a job."""

import uuid

from flask import Blueprint
from flask import g
from flask import request
from flask import url_for

from app.errors import NotFound
from app.errors import ServiceUnavailable
from app.errors import Unprocessable
from app.jobs import service
from app.jobs.schemas import JobSchema
from app.jobs.schemas import SubmitSchema
from app.queueing import enqueue
from app.requests import json_body
from storage.db import session

bp = Blueprint("jobs", __name__, url_prefix="/v1")

_submit_schema = SubmitSchema()
_job_schema = JobSchema()
_MAX_LOOKUP_IDS = 100
_UNQUEUED = "the job could not be queued: the broker was unavailable"


def _submit(queue):
    item = _submit_schema.load(json_body())
    (job,) = service.create(session, items=[item], queue=queue, api_key_id=g.api_key.id)
    try:
        enqueue([job.id], queue)
    except ServiceUnavailable:
        service.mark_unqueued(session, jobs=[job], reason=_UNQUEUED)
        raise

    url = url_for("jobs.get", job_id=job.id)
    body = {"id": job.id, "status": "queued", "queue": queue, "links": {"self": url}}
    if job.callback is not None:
        # Shown this once: the receiver verifies the callback's signature with it.
        body["callback_secret"] = job.callback.secret
    return body, 202, {"Location": url}


@bp.post("/classifications")
def submit():
    """Queue one message on the standard queue."""
    return _submit("standard")


@bp.post("/emergency")
def submit_emergency():
    """Queue one message on the emergency queue, served before standard."""
    return _submit("emergency")


@bp.get("/classifications")
def list_():
    """Return the jobs named by ``?ids=a,b,...`` (at most 100), for bulk polling."""
    raw = request.args.get("ids", "")
    ids = [part for part in raw.split(",") if part]
    if not ids or len(ids) > _MAX_LOOKUP_IDS:
        raise Unprocessable(
            f"give 1 to {_MAX_LOOKUP_IDS} comma-separated ids in ?ids=",
            fields={"ids": ["between 1 and 100 ids"]},
        )
    valid = [job_id for job_id in ids if _is_uuid(job_id)]
    items = [
        _job_schema.dump(
            service.to_dict(job, self_url=url_for("jobs.get", job_id=job.id))
        )
        for job in service.get_many(session, job_ids=valid)
    ]
    return {"items": items}


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@bp.get("/classifications/<job_id>")
def get(job_id):
    """Return a job's status and, once done, its result."""
    job = service.get(session, job_id=job_id) if _is_uuid(job_id) else None
    if job is None:
        raise NotFound("no such classification")
    return _job_schema.dump(
        service.to_dict(job, self_url=url_for("jobs.get", job_id=job.id))
    )
