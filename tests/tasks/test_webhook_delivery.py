"""Deliveries through a real webhooks worker and a real Beat, to real receivers.

One ``celery worker -Q webhooks`` and one ``celery beat`` run for the whole
module, on a module-wide database, with short backoff settings so retries
take fractions of a second. The dispatcher is run by that Beat process
(every 0.25 s here), exactly as in production; tests never call it.
"""

import json
import time

import pytest
import redis

from app import create_app
from app.client import verify_signature
from security.signing import InvalidSignature
from storage import db
from tests.app.test_webhooks import auth
from tests.app.test_webhooks import finish
from tests.conftest import Beat
from tests.conftest import Worker
from tests.conftest import make_test_config
from tests.conftest import service_env
from tests.conftest import wait_for
from tests.receivers import Receiver
from tests.receivers import Reply
from tests.tasks.test_classify_worker import MESSAGES

SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE": 1,
    "WEBHOOK_MAX_ATTEMPTS": 4,
    "WEBHOOK_RETRY_BASE_SECONDS": 0.3,
    "WEBHOOK_RETRY_MAX_SECONDS": 3.0,
    "WEBHOOK_RETRY_JITTER": 0.2,
    "WEBHOOK_CONNECT_TIMEOUT_SECONDS": 1.0,
    "WEBHOOK_READ_TIMEOUT_SECONDS": 1.0,
    "WEBHOOK_DISPATCH_INTERVAL_SECONDS": 0.25,
    "WEBHOOK_LEASE_SECONDS": 20,
    "WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS": 8,
    "WEBHOOK_TASK_TIME_LIMIT_SECONDS": 12,
}
SIGNATURE = "aicrisisalert-signature"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    """One database for the module: the worker and Beat outlive single tests."""
    return f"sqlite:///{tmp_path_factory.mktemp('webhooks-db') / 'test.db'}"


@pytest.fixture(scope="module")
def app(redis_url, database_url):
    """The API on the module's database, allowed to register 127.0.0.1."""
    redis.Redis.from_url(f"{redis_url}/0").flushdb()
    application = create_app(make_test_config(redis_url, database_url, **SETTINGS))
    db.create_all()
    yield application
    db.session.remove()


@pytest.fixture(scope="module", autouse=True)
def delivery_processes(app, redis_url, database_url, tmp_path_factory):
    """A real worker on the webhooks queue and a real Beat, for the module."""
    folder = tmp_path_factory.mktemp("webhook-processes")
    env = service_env(redis_url, database_url, **SETTINGS)
    worker = Worker(env, "webhooks", folder / "worker.log", concurrency=2).start()
    beat = Beat(env, folder).start()
    yield worker, beat
    beat.stop()
    worker.stop()


@pytest.fixture(autouse=True)
def _fresh_session():
    """Read what the worker wrote, not what this session cached."""
    yield
    db.session.remove()


def register(client, key, url, **body):
    response = client.post("/v1/webhooks", json={"url": url, **body}, headers=auth(key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def deliveries(client, key, endpoint_id):
    path = f"/v1/webhooks/{endpoint_id}/deliveries"
    return client.get(path, headers=auth(key)).get_json()["items"]


def wait_delivery(client, key, delivery_id, status, timeout=20):
    def check():
        db.session.remove()
        body = client.get(f"/v1/deliveries/{delivery_id}", headers=auth(key))
        body = body.get_json()
        return body if body["status"] == status else None

    return wait_for(check, timeout=timeout, interval=0.1, message=f"{status} delivery")


def event_ids(receiver):
    return {json.loads(r.body)["id"] for r in receiver.requests}


def test_receiver_failing_three_times_gets_four_attempts_of_one_event(client, make_key):
    """500, 500, 500, then 200: four attempts, one event id, none after success."""
    key = make_key()
    with Receiver([Reply(500), Reply(500), Reply(500)]) as receiver:
        endpoint = register(client, key, receiver.url("/flaky"))
        _job, (delivery_id,) = finish(key)

        done = wait_delivery(client, key, delivery_id, "succeeded")
        # Several dispatch intervals and more than the longest backoff.
        time.sleep(1.5)

    assert receiver.count() == 4
    assert len(event_ids(receiver)) == 1
    assert len({r.body for r in receiver.requests}) == 1
    assert [r.headers["aicrisisalert-attempt"] for r in receiver.requests] == [
        "1",
        "2",
        "3",
        "4",
    ]
    for request in receiver.requests:
        verify_signature(endpoint["secret"], request.headers[SIGNATURE], request.body)
    gaps = [
        b.at - a.at
        for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)
    ]
    # Backoff 0.3 s doubling, jitter 20 %: at least 0.24, 0.48, 0.96 s apart.
    assert gaps[0] >= 0.24 and gaps[1] >= 0.48 and gaps[2] >= 0.96, gaps
    attempts = done["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 500, 200]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "retry", "succeeded"]
    assert all(a["latency_ms"] > 0 and a["started_at"] for a in attempts)
    assert attempts[0]["error"] == "receiver error 500" and attempts[3]["error"] is None
    assert deliveries(client, key, endpoint["id"])[0]["id"] == delivery_id


def test_always_failing_receiver_is_dead_lettered_then_redelivered(client, make_key):
    """503 forever: dead after 4 attempts, listed as dead, redelivered by hand."""
    key = make_key()
    with Receiver(default=Reply(503)) as receiver:
        endpoint = register(client, key, receiver.url("/down"))
        _job, (delivery_id,) = finish(key)

        dead = wait_delivery(client, key, delivery_id, "dead")
        listed = client.get("/v1/deliveries?status=dead", headers=auth(key))
        receiver.default = Reply(200)
        response = client.post(
            f"/v1/deliveries/{delivery_id}/redeliver", headers=auth(key)
        )
        again = response.get_json()
        redone = wait_delivery(client, key, again["id"], "succeeded")

    assert [a["status_code"] for a in dead["attempts"]] == [503] * 4
    assert dead["attempts"][-1]["outcome"] == "dead"
    assert dead["last_error"] == "receiver error 503"
    assert [d["id"] for d in listed.get_json()["items"]] == [delivery_id]
    assert response.status_code == 202
    assert again["redelivery_of"] == delivery_id
    assert again["event_id"] == dead["event_id"]
    assert [a["status_code"] for a in redone["attempts"]] == [200]
    assert receiver.count() == 5
    assert event_ids(receiver) == {dead["event_id"]}
    assert receiver.requests[-1].body == receiver.requests[0].body
    verify_signature(
        endpoint["secret"],
        receiver.requests[-1].headers[SIGNATURE],
        receiver.requests[-1].body,
    )


def test_slow_receiver_times_out_and_is_retried(client, make_key):
    """A reply slower than the 1 s read timeout is a failed attempt, retried."""
    key = make_key()
    with Receiver([Reply(200, delay_seconds=3)]) as receiver:
        register(client, key, receiver.url("/slow"))
        _job, (delivery_id,) = finish(key)

        done = wait_delivery(client, key, delivery_id, "succeeded")

    first, second = done["attempts"]
    assert first["status_code"] is None and first["outcome"] == "retry"
    assert first["error"].startswith("timed out")
    assert 900 <= first["latency_ms"] < 2500
    assert second["status_code"] == 200
    assert receiver.count() == 2


def test_redirect_is_not_followed(client, make_key):
    """A 302 fails the delivery at once; the redirect target hears nothing."""
    key = make_key()
    with Receiver() as target:
        redirect = Reply(302, {"Location": target.url("/elsewhere")})
        with Receiver(default=redirect) as receiver:
            register(client, key, receiver.url("/moved"))
            _job, (delivery_id,) = finish(key)

            dead = wait_delivery(client, key, delivery_id, "dead")
            time.sleep(1.0)

    (attempt,) = dead["attempts"]
    assert (attempt["status_code"], attempt["error"]) == (
        302,
        "redirect 302 not followed",
    )
    assert receiver.count() == 1
    assert target.count() == 0


def test_retry_after_is_honoured_and_other_4xx_are_not_retried(client, make_key):
    """429 with Retry-After: 2 waits 2 s; a 400 is dead after one attempt."""
    limited_key, refused_key = make_key(), make_key()
    limited = Receiver([Reply(429, {"Retry-After": "2"})])
    refusing = Receiver(default=Reply(400))
    with limited, refusing:
        register(client, limited_key, limited.url("/limited"))
        register(client, refused_key, refusing.url("/refusing"))
        _job, (limited_id,) = finish(limited_key)
        _job, (refused_id,) = finish(refused_key)

        succeeded = wait_delivery(client, limited_key, limited_id, "succeeded")
        dead = wait_delivery(client, refused_key, refused_id, "dead")
        time.sleep(1.0)

    first, second = limited.requests
    assert second.at - first.at >= 2.0
    assert [a["status_code"] for a in succeeded["attempts"]] == [429, 200]
    assert refusing.count() == 1
    (refused,) = dead["attempts"]
    assert (refused["status_code"], refused["outcome"]) == (400, "dead")
    assert refused["error"] == "receiver refused the delivery (400)"


def test_rotation_signs_with_both_secrets_during_the_overlap(client, make_key):
    """After rotating with an overlap, each delivery carries two v1 signatures."""
    key = make_key()
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url("/rotating"))
        rotate = f"/v1/webhooks/{endpoint['id']}/rotate-secret"
        old = endpoint["secret"]
        new = client.post(
            rotate, json={"overlap_seconds": 3600}, headers=auth(key)
        ).get_json()["secret"]
        _job, (during,) = finish(key)
        wait_delivery(client, key, during, "succeeded")

        newest = client.post(
            rotate, json={"overlap_seconds": 0}, headers=auth(key)
        ).get_json()["secret"]
        _job, (after,) = finish(key)
        wait_delivery(client, key, after, "succeeded")

    overlap, single = receiver.requests
    header = overlap.headers[SIGNATURE]
    assert header.count("v1=") == 2
    verify_signature(new, header, overlap.body)
    verify_signature(old, header, overlap.body)
    assert single.headers[SIGNATURE].count("v1=") == 1
    verify_signature(newest, single.headers[SIGNATURE], single.body)
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify_signature(new, single.headers[SIGNATURE], single.body)


def test_real_classification_calls_back_and_notifies_endpoints(
    client, make_key, start_worker
):
    """Submit with callback_url -> real classify worker -> two signed deliveries."""
    start_worker("emergency,standard")
    key = make_key()
    with Receiver() as receiver:
        endpoint = register(client, key, receiver.url("/endpoint"))
        submitted = client.post(
            "/v1/emergency",
            json={
                "text": MESSAGES[0][0],
                "source": "sms",
                "callback_url": receiver.url("/callback"),
            },
            headers=auth(key),
        ).get_json()
        wait_for(lambda: receiver.count() == 2, timeout=120, message="two deliveries")
        job = client.get(submitted["links"]["self"], headers=auth(key)).get_json()

    by_path = {request.path: request for request in receiver.requests}
    callback, notified = by_path["/callback"], by_path["/endpoint"]
    verify_signature(
        submitted["callback_secret"], callback.headers[SIGNATURE], callback.body
    )
    verify_signature(endpoint["secret"], notified.headers[SIGNATURE], notified.body)
    with pytest.raises(InvalidSignature):
        verify_signature(endpoint["secret"], callback.headers[SIGNATURE], callback.body)
    event = json.loads(callback.body)
    assert callback.body == notified.body
    assert event["type"] == "classification.succeeded"
    assert event["data"] == job
    assert event["data"]["result"]["category"] == MESSAGES[0][1]
    assert callback.headers["aicrisisalert-event-id"] == event["id"]
    assert callback.headers["content-type"] == "application/json"
    print("\n--- one signed delivery, as the receiver saw it ---")
    print(callback.raw_headers.replace("\r\n", "\n"), end="")
    print(callback.body.decode())


def test_new_alert_is_delivered_to_subscribed_admin_endpoints_only(
    app, client, make_key
):
    """A failed-login burst raises an alert; its alert.* event reaches admins.

    The check runs in-process (``run_check`` with the real webhook hook);
    the delivery goes through the module's real worker and Beat.
    """
    from monitoring import checks
    from monitoring import state
    from tasks import alerts as alert_hook
    from tests.monitoring.conftest import fail_logins

    admin, operator = make_key("admin"), make_key("operator")
    refused = client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/x", "event_types": ["alert.failed_auth_rate"]},
        headers=auth(operator),
    )
    assert refused.status_code == 422
    assert "admin keys only" in json.dumps(refused.get_json())
    with Receiver([]) as receiver:
        endpoint = register(
            client,
            admin,
            receiver.url("/alerts"),
            event_types=["alert.failed_auth_rate"],
        )
        fail_logins(client, 11, address="198.51.100.77")
        with app.app_context():
            summary = checks.run_check(
                db.session,
                state.client_for(app.config),
                app.config,
                notify=alert_hook.notify,
            )
        assert len(summary["new"]) >= 1

        wait_for(lambda: receiver.count() >= 1, timeout=20, message="alert delivery")

    request = receiver.requests[0]
    verify_signature(endpoint["secret"], request.headers[SIGNATURE], request.body)
    event = json.loads(request.body)
    assert event["type"] == "alert.failed_auth_rate"
    assert event["data"]["type"] == "failed_auth_rate"
    assert "198.51.100.77" in event["data"]["subject"]
