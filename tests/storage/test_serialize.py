"""The job's JSON, written out by hand, against the documented schema's dump."""

from datetime import UTC
from datetime import datetime

import pytest

from storage.models import Job
from storage.serialize import JobSchema
from storage.serialize import job_json
from storage.serialize import to_dict

_CREATED = datetime(2026, 1, 2, 3, 4, 5, 678901)


def _job(**fields):
    base = {
        "id": "0b6f7f0e-8d2c-4c3b-9d59-2f1f3f0c9a11",
        "queue": "standard",
        "status": "queued",
        "text": "Bridge on 5th street collapsed, people trapped",
        "created_at": _CREATED,
    }
    return Job(**{**base, **fields})


_JOBS = {
    "queued, naive times as SQLite gives them": _job(),
    "queued with source and location": _job(source="sms", location="São Paulo"),
    "running": _job(status="running", started_at=_CREATED, attempts=1),
    "succeeded": _job(
        status="succeeded",
        created_at=_CREATED.replace(tzinfo=UTC),
        started_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 4, 6, 5000, tzinfo=UTC),
        category="injured_or_dead_people",
        confidence=0.8125,
        scores={"injured_or_dead_people": 0.8125, "not_humanitarian": 0.1875},
        model_version="minilm-humaid-0123456789ab",
        truncated=False,
        needs_review=True,
        queue_ms=12,
        inference_ms=3.25,
    ),
    "succeeded with integer scores and no timings": _job(
        status="succeeded",
        finished_at=_CREATED,
        category="sympathy_and_support",
        confidence=1,
        scores={"sympathy_and_support": 1, "other": 0},
        model_version="v",
        truncated=True,
        needs_review=False,
    ),
    "failed": _job(
        status="failed", finished_at=_CREATED, error="the worker died 3 times"
    ),
}


@pytest.mark.parametrize("job", _JOBS.values(), ids=list(_JOBS))
def test_job_json_equals_the_schema_dump(job):
    """The hand-written JSON is the schema's dump, value for value and type."""
    url = f"/prefix/v1/classifications/{job.id}"

    written = job_json(job, self_url=url)
    dumped = JobSchema().dump(to_dict(job, self_url=url))

    assert written == dumped
    assert _types(written) == _types(dumped)


def _types(value):
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    return type(value).__name__
