"""Request logs: one row per API request with lengths, never the text."""

import csv

import pytest
import redis
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from monitoring import requestlog
from security import keys
from storage import db
from storage.db import session
from storage.models import ApiKey
from storage.monitoring import RequestLog
from tests.conftest import HUMAID_DIR
from tests.conftest import KeyMaker
from tests.conftest import build_app
from tests.conftest import wait_for

AGENT = "aicrisisalert-client/0.1"


def _tweets(limit):
    with open(HUMAID_DIR / "test.tsv", newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["tweet_text"] for _, row in zip(range(limit), rows, strict=False)]


def test_each_request_is_logged_with_lengths_not_text(app, client, make_key):
    """Submits of real tweets log their lengths; probes are not logged."""
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}", "User-Agent": AGENT}
    texts = _tweets(5)
    for n, text in enumerate(texts):
        response = client.post(
            "/v1/classifications",
            json={"text": text},
            headers={**headers, "X-Request-ID": f"req-{n}"},
        )
        assert response.status_code == 202
    client.get("/v1/classifications/nope", headers=headers)
    client.get("/health")
    client.get("/ready")

    with app.app_context():
        rows = session.scalars(select(RequestLog).order_by(RequestLog.id)).all()

    assert "text" not in RequestLog.__table__.columns
    assert [row.endpoint for row in rows] == ["jobs.submit"] * 5 + ["jobs.get"]
    assert [row.text_length for row in rows] == [len(t) for t in texts] + [None]
    assert [row.status for row in rows] == [202] * 5 + [404]
    assert [row.request_id for row in rows[:5]] == [f"req-{n}" for n in range(5)]
    assert {row.key_prefix for row in rows} == {keys.parse_prefix(key)}
    assert {row.user_agent_length for row in rows} == {len(AGENT)}
    assert all(row.duration_ms > 0 for row in rows)


@pytest.fixture
def batching_app(redis_url, database_url):
    """The app writing request logs and key usage every 0.3 s, as in production."""
    application = build_app(redis_url, database_url, REQUESTLOG_FLUSH_SECONDS=0.3)
    yield application
    requestlog.flush()
    requestlog.configure(flush_seconds=0)
    db.session.remove()


def test_batched_rows_and_usage_arrive_in_a_few_statements(batching_app):
    """Twenty submits: their rows and the key's twenty uses, in a few writes."""
    app = batching_app
    client = app.test_client()
    key = KeyMaker(app)("operator")
    headers = {"Authorization": f"Bearer {key}", "User-Agent": AGENT}
    writes = []

    def count_writes(_conn, _cursor, statement, *_args):
        if statement.startswith(("INSERT INTO request_logs", "UPDATE api_keys")):
            writes.append(statement.split()[0])

    event.listen(db.get_engine(), "before_cursor_execute", count_writes)
    for text in _tweets(20):
        response = client.post(
            "/v1/classifications", json={"text": text}, headers=headers
        )
        assert response.status_code == 202

    def logged():
        with app.app_context():
            return session.scalar(select(func.count()).select_from(RequestLog))

    wait_for(lambda: logged() == 20, timeout=5, message="the batch to be written")
    with app.app_context():
        row = session.scalars(select(ApiKey)).one()
        assert (row.use_count, row.last_used_at is not None) == (20, True)
    # Written one by one, that was 20 inserts and 20 updates; each flush
    # (every 0.3 s) writes one multi-row insert and one update per key.
    assert 1 <= writes.count("INSERT") <= 10
    assert writes.count("INSERT") == writes.count("UPDATE")


def test_flush_writes_what_the_process_holds_at_once(batching_app):
    """flush() (gunicorn's worker_exit, atexit) writes pending rows now."""
    app = batching_app
    requestlog.configure(flush_seconds=3600)
    client = app.test_client()
    key = KeyMaker(app)("operator")

    response = client.get(
        "/v1/classifications/nope", headers={"Authorization": f"Bearer {key}"}
    )
    written = requestlog.flush()

    assert response.status_code == 404
    assert written == 1
    with app.app_context():
        (row,) = session.scalars(select(RequestLog)).all()
        assert (row.endpoint, row.status) == ("jobs.get", 404)
        assert session.scalars(select(ApiKey)).one().use_count == 1


def test_request_metrics_are_summed_and_written_with_the_batch(batching_app, redis_url):
    """Five submits and a 404 reach the metrics in Redis at the flush, summed."""
    app = batching_app
    requestlog.configure(flush_seconds=3600)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {KeyMaker(app)('operator')}"}
    store = redis.Redis.from_url(f"{redis_url}/0")
    requests_hash = "aicrisisalert:metrics:requests"
    latency_hash = "aicrisisalert:metrics:submit_latency_seconds"

    statuses = [
        client.post("/v1/classifications", json={"text": text}, headers=headers)
        for text in _tweets(5)
    ] + [client.get("/v1/classifications/nope", headers=headers)]
    before = store.hgetall(requests_hash)
    requestlog.flush()

    assert [r.status_code for r in statuses] == [202] * 5 + [404]
    assert before == {}
    counts = store.hgetall(requests_hash)
    assert int(counts[b'["jobs.submit", "202"]']) == 5
    assert int(counts[b'["jobs.get", "404"]']) == 1
    latency = store.hgetall(latency_hash)
    buckets = {
        field: int(value)
        for field, value in latency.items()
        if not field.endswith(b'"sum"]')
    }
    assert sum(buckets.values()) == 5
    assert float(latency[b'["jobs.submit", "sum"]']) > 0
