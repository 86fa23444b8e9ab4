import time

import pytest

from app import create_app
from storage import db
from storage.db import session
from storage.models import Job
from tests.conftest import free_port
from tests.conftest import make_test_config


def test_health_needs_no_key(client):
    """Liveness answers 200 without a key."""
    response = client.get("/health")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_reports_each_part(client):
    """With Redis and the database up, /ready is 200 and says so per part."""
    response = client.get("/ready")

    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": "ok", "redis": "ok"}


@pytest.fixture
def app_without_redis(redis_url, database_url):
    """The app pointed at a port where no Redis listens."""
    dead = f"redis://127.0.0.1:{free_port()}"
    application = create_app(make_test_config(dead, database_url))
    db.create_all()
    yield application
    db.session.remove()


def test_ready_names_redis_when_it_is_down(app_without_redis):
    """/ready answers 503 naming redis, within about a second."""
    started = time.monotonic()

    response = app_without_redis.test_client().get("/ready")

    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert time.monotonic() - started < 2.5


def test_submit_while_broker_down_is_503_and_not_left_queued(app_without_redis):
    """A submit that cannot be enqueued is a 503 with Retry-After; its row is failed."""
    from tests.conftest import KeyMaker

    headers = KeyMaker(app_without_redis).headers()
    client = app_without_redis.test_client()
    started = time.monotonic()

    response = client.post(
        "/v1/emergency",
        json={"text": "bridge collapsed, people in water"},
        headers=headers,
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert time.monotonic() - started < 5
    with app_without_redis.app_context():
        (job,) = session.query(Job).all()
        assert job.status == "failed"
        assert "broker" in job.error
