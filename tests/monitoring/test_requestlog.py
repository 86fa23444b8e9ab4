"""Request logs: one row per API request with lengths, never the text."""

import csv

from sqlalchemy import select

from security import keys
from storage.db import session
from storage.monitoring import RequestLog
from tests.conftest import HUMAID_DIR

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
