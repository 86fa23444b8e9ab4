"""The webhook API, event creation and one attempt, in process (no worker)."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from security import keys
from security.urls import MAX_URL_CHARS
from storage import jobs as job_states
from storage import webhooks
from storage.db import session
from storage.models import ApiKey
from storage.models import Job
from storage.models import JobCallback
from storage.models import SecurityEvent
from storage.models import WebhookAttempt
from storage.models import WebhookDelivery
from storage.models import WebhookEndpoint
from storage.models import WebhookEvent
from storage.models import as_utc
from storage.models import utcnow
from tests.receivers import Receiver
from tests.security.test_urls import BLOCKED

TWEET = "Flooding on Main St, family of four trapped on roof, need boat rescue"
PUBLIC_URL = "https://hooks.example.com/aicrisisalert"
RESULT = {
    "category": "requests_or_urgent_needs",
    "confidence": 0.91,
    "scores": {"requests_or_urgent_needs": 0.91, "other_relevant_information": 0.09},
    "model_version": "minilm-humaid-test",
    "truncated": False,
}


@pytest.fixture
def database_url(any_database_url):
    """Run this module on every database backend available."""
    return any_database_url


def key_id(key):
    prefix = keys.parse_prefix(key)
    return session.scalars(select(ApiKey.id).where(ApiKey.prefix == prefix)).one()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def register(client, key, **body):
    body.setdefault("url", PUBLIC_URL)
    response = client.post("/v1/webhooks", json=body, headers=auth(key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def finish(key, *, status="succeeded", callback_url=None):
    """Create a job for ``key`` and finish it as the worker would."""
    job = Job(queue="standard", text=TWEET, api_key_id=key_id(key))
    if callback_url:
        job.callback = JobCallback(url=callback_url, secret="whsec_callback")
    session.add(job)
    session.commit()
    job_states.claim(session, [job.id])
    if status == "succeeded":
        ids = job_states.complete(
            session, [job], [RESULT], inference_ms=12.5, review_threshold=0.5
        )
    else:
        ids = job_states.fail(session, [job], "classification failed: RuntimeError")
    return job, ids


def test_create_returns_the_secret_once_and_never_again(client, make_key):
    """201 with Location and secret; get and list never show the secret."""
    key = make_key()

    response = client.post(
        "/v1/webhooks",
        json={"url": PUBLIC_URL, "description": "ops desk"},
        headers=auth(key),
    )

    assert response.status_code == 201
    created = response.get_json()
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == [
        "classification.succeeded",
        "classification.failed",
    ]
    assert created["enabled"] is True
    assert response.headers["Location"] == f"/v1/webhooks/{created['id']}"
    shown = client.get(response.headers["Location"], headers=auth(key)).get_json()
    listed = client.get("/v1/webhooks", headers=auth(key)).get_json()["items"]
    assert "secret" not in shown
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert shown["url"] == PUBLIC_URL and shown["description"] == "ops desk"


def test_a_key_sees_only_its_own_endpoints(client, make_key):
    """Another key's endpoint is 404 to get, change, delete or list."""
    owner, other = make_key(), make_key()
    endpoint = register(client, owner)
    path = f"/v1/webhooks/{endpoint['id']}"

    assert client.get("/v1/webhooks", headers=auth(other)).get_json() == {"items": []}
    assert client.get(path, headers=auth(other)).status_code == 404
    assert (
        client.patch(path, json={"enabled": False}, headers=auth(other)).status_code
        == 404
    )
    assert client.delete(path, headers=auth(other)).status_code == 404
    assert client.post(f"{path}/rotate-secret", headers=auth(other)).status_code == 404
    assert client.get(f"{path}/deliveries", headers=auth(other)).status_code == 404
    assert client.get(path, headers=auth(owner)).get_json()["enabled"] is True


def test_roles_without_create_permission_are_403(client, make_key):
    """A viewer key cannot manage webhooks; an api_user key can."""
    viewer = make_key(role="viewer")

    response = client.post(
        "/v1/webhooks", json={"url": PUBLIC_URL}, headers=auth(viewer)
    )

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    register(client, make_key(role="api_user"))


@pytest.mark.parametrize(("url", "message"), BLOCKED)
def test_create_refuses_every_blocked_url_form(client, make_key, url, message):
    """Each unsafe URL form is 422 naming the url field, and nothing is stored."""
    response = client.post(
        "/v1/webhooks", json={"url": url}, headers=make_key.headers()
    )

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    (reason,) = error["fields"]["url"]
    assert reason
    assert session.scalars(select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize(("url", "message"), BLOCKED)
def test_submit_refuses_every_blocked_callback_url(app, client, make_key, url, message):
    """A blocked callback_url is 422 on both submit endpoints; no job is created."""
    headers = make_key.headers()
    for path in ("/v1/classifications", "/v1/emergency"):
        response = client.post(
            path, json={"text": TWEET, "callback_url": url}, headers=headers
        )
        assert response.status_code == 422, (path, url)
        assert "callback_url" in response.get_json()["error"]["fields"]
    assert session.scalars(select(Job)).all() == []


def test_registration_resolves_the_name_and_refuses_loopback(client, make_key):
    """'localhost' is refused by what it resolves to, at registration."""
    response = client.post(
        "/v1/webhooks",
        json={"url": "https://localhost/hook"},
        headers=make_key.headers(),
    )

    assert response.status_code == 422
    (reason,) = response.get_json()["error"]["fields"]["url"]
    assert "'localhost' resolves to a refused address (loopback" in reason


def test_update_rechecks_the_url_and_applies_changes(client, make_key):
    """PATCH refuses an unsafe URL and unknown fields, and applies good changes."""
    key = make_key()
    path = f"/v1/webhooks/{register(client, key)['id']}"

    unsafe = client.patch(
        path, json={"url": "https://169.254.169.254/"}, headers=auth(key)
    )
    unknown = client.patch(path, json={"secret": "mine"}, headers=auth(key))
    changed = client.patch(
        path,
        json={"enabled": False, "event_types": ["classification.failed"]},
        headers=auth(key),
    )

    assert unsafe.status_code == 422
    assert "link-local" in unsafe.get_json()["error"]["fields"]["url"][0]
    assert unknown.status_code == 422
    assert "secret" in unknown.get_json()["error"]["fields"]
    assert changed.status_code == 200
    body = changed.get_json()
    assert (body["enabled"], body["event_types"]) == (False, ["classification.failed"])
    assert body["url"] == PUBLIC_URL


@pytest.mark.parametrize(
    ("event_types", "message"),
    [
        (["alert.anomaly"], "is not an event type"),
        (["alert.failed_auth_rate"], "alert events are for admin keys only"),
        (["classification.done"], "is not an event type"),
        ([], "Length must be between 1 and 10"),
        (["classification.failed", "classification.failed"], "must not repeat"),
        ("classification.failed", "Not a valid list"),
    ],
)
def test_create_refuses_bad_event_types(client, make_key, event_types, message):
    """Unknown, admin-only, empty or repeated event types are 422."""
    response = client.post(
        "/v1/webhooks",
        json={"url": PUBLIC_URL, "event_types": event_types},
        headers=make_key.headers(),
    )

    assert response.status_code == 422
    assert message in json.dumps(response.get_json()["error"]["fields"])


def test_create_refuses_unknown_fields_and_non_json(client, make_key):
    """The body schema raises on unknown fields; a non-JSON body is 415."""
    headers = make_key.headers()

    unknown = client.post(
        "/v1/webhooks", json={"url": PUBLIC_URL, "secret": "x"}, headers=headers
    )
    not_json = client.post("/v1/webhooks", data="url=x", headers=headers)
    too_long = client.post(
        "/v1/webhooks",
        json={"url": "https://a.example/" + "p" * MAX_URL_CHARS},
        headers=headers,
    )

    assert unknown.status_code == 422
    assert unknown.get_json()["error"]["fields"] == {"secret": ["Unknown field."]}
    assert not_json.status_code == 415
    assert too_long.status_code == 422


def test_endpoints_per_key_are_capped(app, client, make_key):
    """Past WEBHOOK_MAX_ENDPOINTS_PER_KEY, creation is 409."""
    app.config["WEBHOOK_MAX_ENDPOINTS_PER_KEY"] = 2
    key = make_key()
    register(client, key)
    register(client, key)

    response = client.post("/v1/webhooks", json={"url": PUBLIC_URL}, headers=auth(key))

    assert response.status_code == 409
    assert "at most 2 webhook endpoints" in response.get_json()["error"]["message"]


def test_rotate_issues_a_new_secret_and_keeps_the_old_for_the_overlap(client, make_key):
    """Rotation returns a new secret; both sign until the overlap ends."""
    key = make_key()
    created = register(client, key)
    path = f"/v1/webhooks/{created['id']}/rotate-secret"

    rotated = client.post(path, json={"overlap_seconds": 3600}, headers=auth(key))

    assert rotated.status_code == 200
    body = rotated.get_json()
    assert body["secret"].startswith("whsec_") and body["secret"] != created["secret"]
    endpoint = session.get(WebhookEndpoint, created["id"])
    session.refresh(endpoint)
    assert webhooks.live_secrets(endpoint) == [body["secret"], created["secret"]]
    expires = as_utc(endpoint.previous_secret_expires_at)
    assert timedelta(seconds=3590) < expires - utcnow() <= timedelta(seconds=3600)
    later = utcnow() + timedelta(seconds=3601)
    assert webhooks.live_secrets(endpoint, now=later) == [body["secret"]]

    again = client.post(path, headers=auth(key)).get_json()  # default overlap, no body
    assert again["previous_secret_expires_at"] is not None
    out_of_range = client.post(path, json={"overlap_seconds": 10**9}, headers=auth(key))
    assert out_of_range.status_code == 422
    assert "overlap_seconds" in out_of_range.get_json()["error"]["fields"]


def test_submit_with_callback_url_returns_its_secret(client, make_key):
    """The 202 carries callback_secret once; the job's callback row holds it."""
    response = client.post(
        "/v1/emergency",
        json={"text": TWEET, "callback_url": PUBLIC_URL},
        headers=make_key.headers(),
    )

    assert response.status_code == 202
    body = response.get_json()
    callback = session.get(JobCallback, body["id"])
    assert body["callback_secret"].startswith("whsec_")
    assert (callback.url, callback.secret) == (PUBLIC_URL, body["callback_secret"])
    plain = client.post(
        "/v1/classifications", json={"text": TWEET}, headers=make_key.headers()
    )
    assert "callback_secret" not in plain.get_json()


def test_finished_job_makes_one_event_for_every_subscribed_target(client, make_key):
    """One event, a delivery per target, and data equal to GET of the job."""
    key = make_key()
    both = register(client, key)
    register(client, key, event_types=["classification.failed"])
    register(client, key, enabled=False)
    register(client, make_key())  # another key's endpoint hears nothing

    job, delivery_ids = finish(key, callback_url=PUBLIC_URL)

    (event,) = session.scalars(select(WebhookEvent)).all()
    deliveries = session.scalars(select(WebhookDelivery)).all()
    assert sorted(d.id for d in deliveries) == sorted(delivery_ids)
    assert {(d.endpoint_id, d.callback_job_id) for d in deliveries} == {
        (both["id"], None),
        (None, job.id),
    }
    assert all(d.event_id == event.id and d.status == "pending" for d in deliveries)
    payload = json.loads(event.payload)
    assert set(payload) == {"id", "type", "created", "data"}
    assert (payload["id"], payload["type"]) == (event.id, "classification.succeeded")
    polled = client.get(f"/v1/classifications/{job.id}", headers=auth(key))
    assert payload["data"] == polled.get_json()
    assert payload["data"]["result"]["category"] == RESULT["category"]


def test_failed_job_announces_classification_failed(client, make_key):
    """A failed job sends classification.failed to endpoints that want it."""
    key = make_key()
    register(client, key, event_types=["classification.succeeded"])
    wants = register(client, key, event_types=["classification.failed"])

    _job, delivery_ids = finish(key, status="failed")

    (delivery,) = [session.get(WebhookDelivery, i) for i in delivery_ids]
    event = session.get(WebhookEvent, delivery.event_id)
    assert delivery.endpoint_id == wants["id"]
    assert event.type == "classification.failed"
    assert json.loads(event.payload)["data"]["error"].startswith("classification")


def test_job_without_targets_makes_no_event(make_key):
    """No callback and no endpoint: no event rows at all."""
    _job, delivery_ids = finish(make_key())

    assert delivery_ids == []
    assert session.scalars(select(WebhookEvent)).all() == []


def test_deliveries_are_listed_per_endpoint_and_for_the_key(client, make_key):
    """Both listings show the key's pending deliveries; a pending one is 409."""
    key = make_key()
    endpoint = register(client, key)
    job, _ids = finish(key, callback_url=PUBLIC_URL)

    per_endpoint = client.get(
        f"/v1/webhooks/{endpoint['id']}/deliveries", headers=auth(key)
    ).get_json()["items"]
    everything = client.get("/v1/deliveries", headers=auth(key)).get_json()["items"]
    other = client.get("/v1/deliveries", headers=make_key.headers()).get_json()

    (item,) = per_endpoint
    assert (item["target"], item["status"], item["job_id"]) == (
        "endpoint",
        "pending",
        job.id,
    )
    assert item["attempts"] == [] and item["event_type"] == "classification.succeeded"
    assert sorted(i["target"] for i in everything) == ["callback_url", "endpoint"]
    assert other == {"items": []}
    redeliver = client.post(f"/v1/deliveries/{item['id']}/redeliver", headers=auth(key))
    assert redeliver.status_code == 409
    assert (
        client.get("/v1/deliveries?status=nope", headers=auth(key)).status_code == 422
    )
    assert client.get("/v1/deliveries?limit=0", headers=auth(key)).status_code == 422


def test_delete_dead_letters_pending_deliveries(client, make_key):
    """Deleting an endpoint: 204, then 404, and its pending deliveries go dead."""
    key = make_key()
    endpoint = register(client, key)
    _job, (delivery_id,) = finish(key)
    path = f"/v1/webhooks/{endpoint['id']}"

    assert client.delete(path, headers=auth(key)).status_code == 204

    assert client.get(path, headers=auth(key)).status_code == 404
    delivery = client.get(f"/v1/deliveries/{delivery_id}", headers=auth(key))
    assert delivery.get_json()["status"] == "dead"
    assert delivery.get_json()["last_error"] == "the endpoint was deleted"
    again = client.post(f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(key))
    assert again.status_code == 409
    assert "the endpoint was deleted" in again.get_json()["error"]["message"]


def test_lease_is_taken_once_and_a_stale_message_does_nothing(app, make_key):
    """A second lease finds nothing; a message with another token is stale."""
    from tasks.webhooks import deliver

    key = make_key()
    _job, (delivery_id,) = finish(key, callback_url=PUBLIC_URL)

    first = webhooks.lease(session, lease_seconds=60, delivery_ids=[delivery_id])
    second = webhooks.lease(session, lease_seconds=60)
    stale = deliver.apply(args=[delivery_id, "not-the-token"]).get()

    assert [d for d, _token in first] == [delivery_id]
    assert second == []
    assert stale == "stale"
    assert session.scalars(select(WebhookAttempt)).all() == []
    later = utcnow() + timedelta(seconds=61)
    assert webhooks.lease(session, lease_seconds=60, now=later)[0][0] == delivery_id


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("https://127.0.0.1:{port}/hook", "loopback address 127.0.0.1"),
        ("https://localhost:{port}/hook", "'localhost' resolves to a refused"),
        ("http://127.0.0.1:{port}/hook", "must use https"),
    ],
)
def test_attempt_rechecks_the_url_and_sends_nothing_to_a_blocked_address(
    app, make_key, template, reason
):
    """A URL that got past registration is refused again at the attempt.

    The row is written directly, as if the check had passed when it was
    registered (a name since re-pointed at loopback); the attempt refuses,
    records a security event and dead-letters it.
    """
    from tasks.webhooks import deliver

    key = make_key()
    with Receiver() as receiver:
        session.add(
            WebhookEndpoint(
                api_key_id=key_id(key),
                url=template.format(port=receiver.port),
                event_types=["classification.succeeded"],
                secret="whsec_x",
            )
        )
        session.commit()
        _job, (delivery_id,) = finish(key)
        ((_id, token),) = webhooks.lease(session, lease_seconds=60)

        result = deliver.apply(args=[delivery_id, token]).get()

    assert result == "dead"
    assert receiver.count() == 0
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    (attempt,) = session.scalars(select(WebhookAttempt)).all()
    assert delivery.status == "dead" and reason in delivery.last_error
    assert (attempt.status_code, attempt.outcome) == (None, "dead")
    (event,) = session.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == "webhook_blocked")
    ).all()
    assert event.details["delivery_id"] == delivery_id


def test_default_retry_schedule_spans_about_a_day(app):
    """Fourteen attempts, 60 s doubling to a 4 h cap: about 24 h end to end."""
    config = app.config
    waits = [
        webhooks.retry_delay_seconds(
            n,
            base_seconds=config["WEBHOOK_RETRY_BASE_SECONDS"],
            max_seconds=config["WEBHOOK_RETRY_MAX_SECONDS"],
            jitter=0,
        )
        for n in range(1, config["WEBHOOK_MAX_ATTEMPTS"])
    ]

    assert waits[:3] == [60, 120, 240]
    assert max(waits) == 4 * 3600
    assert 23 * 3600 < sum(waits) < 25 * 3600
    jittered = [
        webhooks.retry_delay_seconds(3, base_seconds=60, max_seconds=600, jitter=0.2)
        for _ in range(200)
    ]
    assert 192 <= min(jittered) < max(jittered) <= 288


def test_publish_to_a_dead_broker_gives_the_lease_back(app, make_key):
    """With the broker unreachable, nothing is sent and the next dispatch may retry."""
    from celery import Celery

    import config
    from tasks.webhooks import publish

    key = make_key()
    _job, (delivery_id,) = finish(key, callback_url=PUBLIC_URL)
    leases = webhooks.lease(session, lease_seconds=300, delivery_ids=[delivery_id])
    # A port nothing listens on: a real connection refusal, not a stand-in.
    settings = {**app.config, "BROKER_URL": "redis://127.0.0.1:1/0"}
    celery = Celery("dead-broker", set_as_current=False)
    celery.config_from_object(config.celery_settings(settings))

    sent = publish(celery, leases)

    assert sent == 0
    assert webhooks.lease(session, lease_seconds=300)[0][0] == delivery_id
