"""Endpoints: submit to either queue (one message or a batch), and poll a job."""

import uuid

from flask import Blueprint
from flask import current_app
from flask import g
from flask import request
from marshmallow import ValidationError

from app.auth import can_read_all
from app.errors import NotFound
from app.errors import ServiceUnavailable
from app.errors import Unprocessable
from app.jobs import service
from app.jobs.schemas import SubmitSchema
from app.queueing import enqueue
from app.requests import json_body
from security import events
from security import validation
from storage.db import session

bp = Blueprint("jobs", __name__, url_prefix="/v1")

_submit_schema = SubmitSchema()
_MAX_LOOKUP_IDS = 100
_UNQUEUED = "the job could not be queued: the broker was unavailable"


def _load_submission():
    body = json_body()
    try:
        return _submit_schema.load(body)
    except ValidationError:
        rules = validation.hostile_rules(body.get("text"))
        if rules:
            _record_input("suspicious_input", {"refused": True, "rules": rules})
        raise


def _record_input(kind, details):
    events.record(
        session,
        kind,
        key_prefix=g.api_key.prefix,
        client_address=request.remote_addr,
        endpoint=request.endpoint,
        details=details,
    )


def _submit(queue):
    item = _load_submission()
    item["input_flags"] = validation.poisoning_flags(item["text"]) or None
    (job,) = service.create(session, items=[item], queue=queue, api_key_id=g.api_key.id)
    if job.input_flags:
        _record_input(
            "suspicious_input",
            {"refused": False, "flags": job.input_flags, "job_id": job.id},
        )
    try:
        enqueue([job.id], queue)
    except ServiceUnavailable:
        service.mark_unqueued(session, job_ids=[job.id], reason=_UNQUEUED)
        raise

    body = _job_body(job, queue)
    return body, 202, {"Location": body["links"]["self"]}


def _load_batch():
    """Return the batch's items, each loaded by the single submit's schema.

    Raises:
        Unprocessable: 422; ``fields`` names each bad item by its index
            (``{"items": {"3": {"text": [...]}}}``), and nothing is created.
    """
    body = json_body()
    limit = current_app.config["BATCH_MAX_ITEMS"]
    unknown = sorted(set(body) - {"items"})
    if unknown:
        raise Unprocessable(
            "the request body is invalid",
            fields={name: ["Unknown field."] for name in unknown},
        )
    raw = body.get("items")
    if not isinstance(raw, list) or not 1 <= len(raw) <= limit:
        raise Unprocessable(
            f"give 'items': a list of 1 to {limit} messages",
            fields={"items": [f"a list of 1 to {limit} objects"]},
        )

    items, problems, refused = [], {}, {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            problems[str(index)] = {"_schema": ["each item must be a JSON object"]}
            continue
        try:
            items.append(_submit_schema.load(item))
        except ValidationError as error:
            problems[str(index)] = error.messages
            rules = validation.hostile_rules(item.get("text"))
            if rules:
                refused[str(index)] = rules
    if refused:
        _record_input("suspicious_input", {"refused": True, "items": refused})
    if problems:
        raise Unprocessable(
            f"{len(problems)} of {len(raw)} items are invalid; no job was created",
            fields={"items": problems},
        )
    return items


def _job_body(job, queue):
    url = service.job_url(job.id)
    body = {"id": job.id, "status": "queued", "queue": queue, "links": {"self": url}}
    if job.callback_secret is not None:
        # Shown this once: the receiver verifies the callback's signature with it.
        body["callback_secret"] = job.callback_secret
    return body


def _submit_batch(queue):
    items = _load_batch()
    for item in items:
        item["input_flags"] = validation.poisoning_flags(item["text"]) or None
    jobs = service.create(session, items=items, queue=queue, api_key_id=g.api_key.id)
    flagged = {job.id: job.input_flags for job in jobs if job.input_flags}
    if flagged:
        _record_input("suspicious_input", {"refused": False, "jobs": flagged})
    try:
        enqueue(
            [job.id for job in jobs],
            queue,
            per_message=current_app.config["BATCH_JOBS_PER_MESSAGE"],
        )
    except ServiceUnavailable:
        service.mark_unqueued(
            session, job_ids=[job.id for job in jobs], reason=_UNQUEUED
        )
        raise

    return {"items": [_job_body(job, queue) for job in jobs], "count": len(jobs)}, 202


def _owner_id():
    """Return the key id whose jobs the caller may read, or None for all."""
    return None if can_read_all(g.api_key) else g.api_key.id


@bp.post("/classifications")
def submit():
    """Queue one message on the standard queue."""
    return _submit("standard")


@bp.post("/emergency")
def submit_emergency():
    """Queue one message on the emergency queue, served before standard."""
    return _submit("emergency")


@bp.post("/classifications/batch")
def submit_batch():
    """Queue up to BATCH_MAX_ITEMS messages on the standard queue at once.

    All or nothing: one bad item is a 422 naming it by index, and no job
    is created. The 202 lists one job per item, in the items' order.
    There is no emergency batch: an emergency is one report that needs
    action, sent on its own to ``POST /v1/emergency``; bulk loads go to
    the standard queue, so they can never crowd out emergencies.
    """
    return _submit_batch("standard")


@bp.get("/classifications")
def list_():
    """Return the jobs named by ``?ids=a,b,...`` (at most 100), for bulk polling.

    Ids of jobs the caller may not read drop out, as unknown ids do.
    """
    raw = request.args.get("ids", "")
    ids = [part for part in raw.split(",") if part]
    if not ids or len(ids) > _MAX_LOOKUP_IDS:
        raise Unprocessable(
            f"give 1 to {_MAX_LOOKUP_IDS} comma-separated ids in ?ids=",
            fields={"ids": ["between 1 and 100 ids"]},
        )
    valid = [job_id for job_id in ids if _is_uuid(job_id)]
    jobs = service.get_many(session, job_ids=valid, owner_id=_owner_id())
    return {"items": [service.to_json(job) for job in jobs]}


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@bp.get("/classifications/<job_id>")
def get(job_id):
    """Return a job's status and, once done, its result."""
    job = None
    if _is_uuid(job_id):
        job = service.get(session, job_id=job_id, owner_id=_owner_id())
    if job is None:
        raise NotFound("no such classification")
    return service.to_json(job)
