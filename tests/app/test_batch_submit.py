"""POST /v1/classifications/batch against a real Redis and a real database."""

import base64
import json

import pytest
import redis
from sqlalchemy import func
from sqlalchemy import select

from storage.db import session
from storage.models import Job
from tests.conftest import free_port

TWEETS = [
    "Flooding on Main St, family of four trapped on roof, need boat rescue",
    "Red Cross shelter open at the high school gym, bring blankets",
    "Bridge on route 9 collapsed, two cars in the river",
    "Donate to the relief fund to help the earthquake victims",
    "Power is out across the east side after the storm",
]


def job_count():
    return session.scalar(select(func.count()).select_from(Job))


def messages(app, queue):
    """Return the job-id lists of the classify messages waiting on ``queue``."""
    broker = redis.Redis.from_url(app.config["BROKER_URL"])
    found = []
    for raw in reversed(broker.lrange(queue, 0, -1)):  # oldest first
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == "classify.jobs"
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        found.append(args[0])
    return found


def test_batch_answers_one_job_per_item_in_order(app, client, make_key):
    """202 lists a queued job per item, in order, with each item's fields stored."""
    items = [{"text": text, "source": f"feed-{n}"} for n, text in enumerate(TWEETS)]
    items[2]["location"] = "Houston, TX"

    response = client.post(
        "/v1/classifications/batch", json={"items": items}, headers=make_key.headers()
    )

    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["count"] == len(TWEETS)
    assert [item["status"] for item in body["items"]] == ["queued"] * len(TWEETS)
    assert {item["queue"] for item in body["items"]} == {"standard"}
    for item, sent in zip(body["items"], items, strict=True):
        job = session.get(Job, item["id"])
        assert (job.text, job.source, job.location, job.queue) == (
            sent["text"],
            sent["source"],
            sent.get("location"),
            "standard",
        )
        assert item["links"]["self"] == f"/v1/classifications/{item['id']}"
    assert messages(app, "standard") == [[item["id"] for item in body["items"]]]
    assert messages(app, "emergency") == []


def test_batch_is_enqueued_in_chunks_of_the_setting(app, client, make_key):
    """70 items with 32 per message are three messages: 32, 32 and 6 ids, in order."""
    items = [{"text": f"{TWEETS[n % 5]} (report {n})"} for n in range(70)]

    body = client.post(
        "/v1/classifications/batch", json={"items": items}, headers=make_key.headers()
    ).get_json()

    ids = [item["id"] for item in body["items"]]
    chunks = messages(app, "standard")
    assert [len(chunk) for chunk in chunks] == [32, 32, 6]
    assert [job_id for chunk in chunks for job_id in chunk] == ids
    assert job_count() == 70


def test_one_bad_item_is_named_by_index_and_no_job_is_created(app, client, make_key):
    """Items 1 and 3 are bad: 422 names both, and items 0, 2 and 4 are not created."""
    items = [{"text": text} for text in TWEETS]
    items[1] = {"text": "hi"}
    items[3] = {"text": TWEETS[3], "source": "bad source!", "colour": "red"}

    response = client.post(
        "/v1/classifications/batch", json={"items": items}, headers=make_key.headers()
    )

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert set(error["fields"]["items"]) == {"1", "3"}
    assert "text" in error["fields"]["items"]["1"]
    assert set(error["fields"]["items"]["3"]) == {"source", "colour"}
    assert job_count() == 0
    assert messages(app, "standard") == []


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": "not a list"},
        {"items": [{"text": TWEETS[0]}], "queue": "emergency"},
        {"items": [TWEETS[0]]},
        {"texts": [TWEETS[0]]},
    ],
)
def test_malformed_batches_are_422_without_jobs(client, make_key, body):
    """An empty, non-list or unknown-field batch, or a non-object item, is a 422."""
    response = client.post(
        "/v1/classifications/batch", json=body, headers=make_key.headers()
    )

    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "validation_failed"
    assert job_count() == 0


def test_more_items_than_the_setting_is_422(app, client, make_key):
    """BATCH_MAX_ITEMS + 1 items are refused as a whole."""
    app.config["BATCH_MAX_ITEMS"] = 10
    items = [{"text": TWEETS[0]}] * 11

    response = client.post(
        "/v1/classifications/batch", json={"items": items}, headers=make_key.headers()
    )

    assert response.status_code == 422
    assert "1 to 10" in response.get_json()["error"]["message"]
    assert job_count() == 0


def test_batch_body_may_exceed_the_single_submit_limit(app, client, make_key):
    """A 1,000-item batch is well over MAX_BODY_BYTES yet accepted.

    A single submit that size is a 413.
    """
    items = [{"text": f"{TWEETS[n % 5]} " + "more detail " * 20} for n in range(1000)]
    payload = json.dumps({"items": items})
    assert len(payload) > app.config["MAX_BODY_BYTES"]
    headers = {**make_key.headers(), "Content-Type": "application/json"}

    response = client.post("/v1/classifications/batch", data=payload, headers=headers)
    too_big = client.post(
        "/v1/classifications",
        data=json.dumps({"text": "x" * (app.config["MAX_BODY_BYTES"] + 10)}),
        headers=headers,
    )

    assert response.status_code == 202
    assert response.get_json()["count"] == 1000
    assert sum(len(chunk) for chunk in messages(app, "standard")) == 1000
    assert too_big.status_code == 413


def test_batch_over_its_body_limit_is_413(app, client, make_key):
    """Past BATCH_MAX_BODY_BYTES the batch is refused before it is parsed."""
    app.config["BATCH_MAX_BODY_BYTES"] = 2048
    items = [{"text": TWEETS[0]}] * 40

    response = client.post(
        "/v1/classifications/batch", json={"items": items}, headers=make_key.headers()
    )

    assert response.status_code == 413
    assert job_count() == 0


def test_broker_down_is_503_and_the_batch_jobs_are_failed(redis_url, database_url):
    """With the broker unreachable: 503 with Retry-After, every row failed."""
    from app import create_app
    from storage import db
    from tests.conftest import KeyMaker
    from tests.conftest import make_test_config

    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(make_test_config(redis_url, database_url, BROKER_URL=dead))
    db.create_all()
    headers = KeyMaker(app).headers()
    items = [{"text": text} for text in TWEETS]

    response = app.test_client().post(
        "/v1/classifications/batch", json={"items": items}, headers=headers
    )

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"]
    with app.app_context():
        rows = session.scalars(select(Job)).all()
        assert len(rows) == len(TWEETS)
        assert {row.status for row in rows} == {"failed"}
        assert all("broker" in row.error for row in rows)
