"""The job as clients see it, shared by the API (polling) and the workers (events).

Pure serialisation with no Flask in it, so that tasks build webhook event
data in exactly the shape ``GET /v1/classifications/<id>`` returns.
"""

from datetime import datetime

from marshmallow import Schema
from marshmallow import fields

from storage.models import as_utc

JOB_PATH = "/v1/classifications/{job_id}"


class ResultSchema(Schema):
    """The model's answer for one job."""

    category = fields.String()
    confidence = fields.Float()
    scores = fields.Dict(keys=fields.String(), values=fields.Float())
    model_version = fields.String()
    truncated = fields.Boolean()
    needs_review = fields.Boolean()
    queue_ms = fields.Float()
    inference_ms = fields.Float()


class JobSchema(Schema):
    """A job as clients see it."""

    id = fields.String()
    status = fields.String()
    queue = fields.String()
    source = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(default_timezone=None)
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    result = fields.Nested(ResultSchema, allow_none=True)
    error = fields.String(allow_none=True)
    links = fields.Dict(keys=fields.String(), values=fields.String())


_job_schema = JobSchema()


def job_path(job_id):
    """Return the job's URL path, as ``url_for("jobs.get")`` builds it."""
    return JOB_PATH.format(job_id=job_id)


def to_dict(job, *, self_url=None):
    """Return the job in the shape of ``JobSchema`` (datetimes still objects)."""
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
        "links": {"self": self_url or job_path(job.id)},
    }


def _maybe(convert, value):
    return None if value is None else convert(value)


def job_json(job, *, self_url=None):
    """Return the job as JSON-ready values, exactly as ``JobSchema`` dumps it.

    Converted by hand rather than dumped through the schema: a bulk poll
    returns up to 100 jobs, and the schema's field-by-field dump cost more
    than reading the rows. ``tests/storage/test_serialize.py`` holds the
    two to the same output for queued, succeeded and failed jobs, so the
    schema stays the documented truth (it is what ``/openapi.json`` shows).
    """
    data = to_dict(job, self_url=self_url)
    for name in ("created_at", "started_at", "finished_at"):
        data[name] = _maybe(datetime.isoformat, data[name])
    result = data["result"]
    if result is not None:
        for name in ("category", "model_version"):
            result[name] = _maybe(str, result[name])
        for name in ("confidence", "queue_ms", "inference_ms"):
            result[name] = _maybe(float, result[name])
        for name in ("truncated", "needs_review"):
            result[name] = _maybe(bool, result[name])
        if result["scores"] is not None:
            result["scores"] = {
                str(label): float(value) for label, value in result["scores"].items()
            }
    return data
