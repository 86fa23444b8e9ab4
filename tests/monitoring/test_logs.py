"""Logs: request ids in and out, JSON lines, no keys or texts at info level."""

import json
import logging

import pytest

from monitoring import logs
from tests.monitoring.conftest import fail_logins

TEXT = "Our street is cut off by the landslide, two elderly neighbours stuck"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.X:9", True),
        ("x" * 65, False),
        ("bad id", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_request_id_is_echoed_when_safe_and_made_up_otherwise(client, sent, kept):
    """A plain token is echoed back; anything else is replaced by a fresh id."""
    response = client.get("/v1/alerts", headers={"X-Request-ID": sent})

    echoed = response.headers["X-Request-ID"]
    assert (echoed == sent) is kept
    if not kept:
        assert len(echoed) == 32 and echoed.isalnum()


def test_json_formatter_writes_one_object_a_line():
    """A record becomes one JSON line with its level, logger and request id."""
    record = logging.LogRecord(
        "tasks.classify", logging.INFO, __file__, 1, "done jobs=%d", (3,), None
    )
    token = logs.set_request_id("req-9")
    try:
        logs.RequestIdFilter().filter(record)
    finally:
        logs.reset_request_id(token)

    line = logs.JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "done jobs=3"
    assert (entry["level"], entry["logger"], entry["request_id"]) == (
        "INFO",
        "tasks.classify",
        "req-9",
    )


def test_production_logs_are_json_by_default():
    """Without LOG_FORMAT, production logs JSON and development text."""
    assert logs.log_format({"ENV": "production"}) == "json"
    assert logs.log_format({"ENV": "development"}) == "text"
    assert logs.log_format({"ENV": "production", "LOG_FORMAT": "text"}) == "text"


def test_api_logs_carry_no_key_and_no_text_at_info(
    app, client, make_key, watch, caplog
):
    """Submits, failures, alerts and responses log neither keys nor texts."""
    caplog.set_level(logging.INFO)
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "req-77"}
    client.post("/v1/classifications", json={"text": TEXT}, headers=headers)
    client.post("/v1/classifications", json={"text": TEXT * 400}, headers=headers)
    fail_logins(client, 11)
    client.get("/v1/alerts", headers={"Authorization": f"Bearer {key}x"})
    watch.check()

    lines = [record.getMessage() for record in caplog.records]
    assert any("alert:" in line for line in lines)
    # The secret is URL-safe base64, which may itself hold "_".
    secret = key.split("_", 2)[2]
    assert secret
    for line in lines:
        assert TEXT not in line and secret not in line and key not in line
