import json

import pytest
import redis
from sqlalchemy import func
from sqlalchemy import select

from storage.db import session
from storage.models import Job

TWEET = "Flooding on Main St, family of four trapped on roof, need boat rescue"


def job_count():
    return session.scalar(select(func.count()).select_from(Job))


def queue_length(app, queue):
    return redis.Redis.from_url(app.config["BROKER_URL"]).llen(queue)


@pytest.mark.parametrize(
    ("path", "queue"),
    [("/v1/classifications", "standard"), ("/v1/emergency", "emergency")],
)
def test_submit_queues_job_on_its_queue(app, client, make_key, path, queue):
    """A valid submit answers 202 with a Location and publishes to its queue."""
    response = client.post(
        path,
        json={"text": TWEET, "source": "sms", "location": "Houston, TX"},
        headers=make_key.headers(),
    )

    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    assert body["queue"] == queue
    assert response.headers["Location"] == f"/v1/classifications/{body['id']}"
    assert body["links"]["self"] == response.headers["Location"]
    job = session.get(Job, body["id"])
    assert (job.status, job.queue, job.source, job.location) == (
        "queued",
        queue,
        "sms",
        "Houston, TX",
    )
    other = "standard" if queue == "emergency" else "emergency"
    assert queue_length(app, queue) == 1
    assert queue_length(app, other) == 0


def test_get_returns_the_queued_job(client, make_key):
    """Polling a fresh job shows it queued, with no result yet."""
    headers = make_key.headers()
    job_id = client.post(
        "/v1/classifications", json={"text": TWEET}, headers=headers
    ).get_json()["id"]

    body = client.get(f"/v1/classifications/{job_id}", headers=headers).get_json()

    assert body["id"] == job_id
    assert body["status"] == "queued"
    assert body["queue"] == "standard"
    assert body["result"] is None
    assert body["started_at"] is None
    assert body["created_at"].endswith("+00:00")


def test_list_returns_jobs_in_asked_order(client, make_key):
    """Bulk polling returns the named jobs in the order given; unknown ids drop out."""
    headers = make_key.headers()
    ids = [
        client.post(
            "/v1/classifications", json={"text": f"{TWEET} {n}"}, headers=headers
        ).get_json()["id"]
        for n in range(3)
    ]
    unknown = "00000000-0000-4000-8000-000000000000"

    response = client.get(
        "/v1/classifications",
        query_string={"ids": ",".join([ids[2], unknown, ids[0]])},
        headers=headers,
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.get_json()["items"]] == [ids[2], ids[0]]


@pytest.mark.parametrize(
    "job_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1%20OR%201=1"]
)
def test_get_unknown_job_is_404(client, make_key, job_id):
    """An unknown or malformed id is a 404 in the error envelope."""
    response = client.get(f"/v1/classifications/{job_id}", headers=make_key.headers())

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


LONG_TEXT = "a" * 10_001

BAD_BODIES = [
    ("missing text", {"json": {}}, 422, "validation_failed"),
    ("empty text", {"json": {"text": ""}}, 422, "validation_failed"),
    ("whitespace only", {"json": {"text": "   \n\t  "}}, 422, "validation_failed"),
    (
        "zero-width only",
        {"json": {"text": "\u200b\u200b\ufeff\u200d"}},
        422,
        "validation_failed",
    ),
    ("too short", {"json": {"text": "ab"}}, 422, "validation_failed"),
    ("too long", {"json": {"text": "word " * 2001}}, 422, "validation_failed"),
    ("text not a string", {"json": {"text": 42}}, 422, "validation_failed"),
    (
        "unknown field",
        {"json": {"text": TWEET, "priority": 1}},
        422,
        "validation_failed",
    ),
    (
        "source too long",
        {"json": {"text": TWEET, "source": "s" * 51}},
        422,
        "validation_failed",
    ),
    ("array body", {"json": [{"text": TWEET}]}, 422, "validation_failed"),
    ("string body", {"json": "hello there"}, 422, "validation_failed"),
    (
        "lone surrogate",
        {
            "data": '{"text": "help \\ud83d us please"}',
            "content_type": "application/json",
        },
        422,
        "validation_failed",
    ),
    (
        "malformed json",
        {"data": '{"text": "help', "content_type": "application/json"},
        400,
        "malformed_json",
    ),
    (
        "invalid utf-8",
        {"data": b'{"text": "\xff\xfe help"}', "content_type": "application/json"},
        400,
        "malformed_json",
    ),
    ("form body", {"data": {"text": TWEET}}, 415, "unsupported_media_type"),
    (
        "text/plain",
        {"data": TWEET, "content_type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "oversized body",
        {
            "data": json.dumps({"text": "x" * 300_000}),
            "content_type": "application/json",
        },
        413,
        "request_entity_too_large",
    ),
]


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
@pytest.mark.parametrize("path", ["/v1/classifications", "/v1/emergency"])
def test_bad_input_is_refused_and_creates_no_job(
    app, client, make_key, path, case, kwargs, status, code
):
    """Each bad body gets its 4xx in the envelope; no job row, no queued message."""
    response = client.post(path, headers=make_key.headers(), **kwargs)

    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert job_count() == 0
    assert queue_length(app, "standard") + queue_length(app, "emergency") == 0


def test_validation_error_names_the_field(client, make_key):
    """A 422 says which field is wrong and why."""
    response = client.post(
        "/v1/classifications",
        json={"text": "\u200b \u200b"},
        headers=make_key.headers(),
    )

    fields = response.get_json()["error"]["fields"]
    assert "text" in fields
    assert "empty" in fields["text"][0]


def test_text_of_exactly_the_limit_is_accepted(client, make_key):
    """10,000 characters is allowed; the limit counts the trimmed text."""
    response = client.post(
        "/v1/classifications",
        json={"text": "  " + "abcdefghi " * 999 + "abcdefghij" + "  "},
        headers=make_key.headers(),
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer aca_deadbeef_" + "x" * 43,
        "Bearer not-a-key-at-all",
        "Bearer aca_deadbeef_" + "\u00e9" * 40,
    ],
)
def test_missing_or_wrong_key_is_401(client, authorization):
    """No key, a malformed key or an unknown key gets 401 and creates no job."""
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.post("/v1/classifications", json={"text": TWEET}, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert job_count() == 0


def test_key_with_tampered_secret_is_401(client, make_key):
    """The right prefix with a wrong secret is refused."""
    key = make_key()
    tampered = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")

    response = client.post(
        "/v1/classifications",
        json={"text": TWEET},
        headers={"Authorization": f"Bearer {tampered}"},
    )

    assert response.status_code == 401


def test_wrong_method_is_405_with_allow(client, make_key):
    """A GET on a submit endpoint is a 405 naming the allowed method."""
    response = client.get("/v1/emergency", headers=make_key.headers())

    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_404_envelope(client):
    """Unknown paths answer in the same envelope."""
    response = client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_broker_down_fails_the_stored_job_and_its_callback_event(
    redis_url, database_url
):
    """Broker unreachable: 503, and the job row (stored first) ends failed.

    Its callback gets the failure event, so the client hears of it too.
    """
    from app import create_app
    from storage import db
    from storage.models import JobCallback
    from storage.models import WebhookEvent
    from tests.conftest import KeyMaker
    from tests.conftest import free_port
    from tests.conftest import make_test_config

    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(make_test_config(redis_url, database_url, BROKER_URL=dead))
    db.create_all()
    callback_url = "https://hooks.example.com/aicrisisalert"

    response = app.test_client().post(
        "/v1/emergency",
        json={"text": TWEET, "callback_url": callback_url},
        headers=KeyMaker(app).headers(),
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    with app.app_context():
        (job,) = session.scalars(select(Job)).all()
        assert (job.status, job.queue) == ("failed", "emergency")
        assert "broker" in job.error
        assert session.get(JobCallback, job.id).url == callback_url
        (event,) = session.scalars(select(WebhookEvent)).all()
        assert event.job_id == job.id
