"""The alert rules against real events, and alert de-duplication.

Failed authentications are produced by real requests through the app.
Rate-limit violations and suspicious inputs are written with
``events.record()`` because their producers (the limiter and the input
checks) are built on other branches; the rules read the same rows.
"""

import time

import pytest
from sqlalchemy import func
from sqlalchemy import select

from security import events
from security import keys
from storage.db import session
from storage.monitoring import Alert
from storage.monitoring import ResponseAction
from tests.monitoring.conftest import ATTACKER
from tests.monitoring.conftest import BYSTANDER
from tests.monitoring.conftest import fail_logins


@pytest.fixture
def database_url(any_database_url):
    """Run this module on every database backend available."""
    return any_database_url


def _alerts(app):
    with app.app_context():
        return session.scalars(select(Alert).order_by(Alert.id)).all()


def _action_count(app):
    with app.app_context():
        return session.scalar(select(func.count()).select_from(ResponseAction))


def test_failed_auth_rule_quiet_at_ten_a_minute(app, client, watch):
    """Ten failed logins in a minute (the threshold itself) raise nothing."""
    assert fail_logins(client, 10) == [401] * 10

    summary = watch.check()

    assert summary["findings"] == 0
    assert _alerts(app) == []
    assert watch.notified == []


def test_failed_auth_rule_fires_above_ten_a_minute(app, client, watch):
    """Eleven failed logins from one address raise one alert about that address."""
    fail_logins(client, 11)

    summary = watch.check()

    (alert,) = _alerts(app)
    assert summary["new"] == [alert.id]
    assert alert.type == "failed_auth_rate"
    assert alert.subject == f"address:{ATTACKER}"
    assert alert.severity == "high"
    assert alert.details == {"count": 11, "threshold": 10}
    assert [n["type"] for n in watch.notified] == ["failed_auth_rate"]
    assert sorted(a.split(":")[0] for a in summary["actions"]) == [
        "block_address",
        "collect_evidence",
    ]


def test_failed_auth_rule_counts_only_the_last_minute(app, client, watch):
    """Failures more than a minute before the check are not counted."""
    from datetime import timedelta

    from storage.models import utcnow

    fail_logins(client, 11)

    summary = watch.check(now=utcnow() + timedelta(seconds=61))

    assert summary["findings"] == 0
    assert _alerts(app) == []


def test_failed_auth_rule_spread_over_addresses_raises_one_global_alert(
    app, client, watch
):
    """Six failures from each of two addresses: one alert for "all", no block."""
    fail_logins(client, 6, address=ATTACKER)
    fail_logins(client, 6, address=BYSTANDER)

    summary = watch.check()

    (alert,) = _alerts(app)
    assert alert.subject == "all"
    assert alert.details["count"] == 12
    assert [a.split(":")[0] for a in summary["actions"]] == ["collect_evidence"]


def _record_many(app, kind, count, *, key_prefix):
    with app.app_context():
        for _ in range(count):
            events.record(
                session,
                kind,
                key_prefix=key_prefix,
                client_address=ATTACKER,
                endpoint="jobs.submit",
                commit=False,
            )
        session.commit()


def test_rate_limit_rule_threshold_is_five_an_hour_per_key(app, watch):
    """Five violations by a key raise nothing; a sixth raises an alert for it."""
    _record_many(app, "rate_limited", 5, key_prefix="feedbeef")
    _record_many(app, "rate_limited", 5, key_prefix="cafecafe")
    assert watch.check()["findings"] == 0

    _record_many(app, "rate_limited", 1, key_prefix="feedbeef")
    watch.check()

    (alert,) = _alerts(app)
    assert (alert.type, alert.subject) == ("rate_limit_violations", "key:feedbeef")
    assert alert.details == {"count": 6, "threshold": 5}


def test_suspicious_input_rule_threshold_is_twenty_an_hour(app, watch, make_key):
    """Twenty suspicious inputs raise nothing; the 21st revokes the key."""
    key = make_key("operator")
    prefix = keys.parse_prefix(key)
    _record_many(app, "suspicious_input", 20, key_prefix=prefix)
    assert watch.check()["findings"] == 0

    _record_many(app, "suspicious_input", 1, key_prefix=prefix)
    summary = watch.check()

    (alert,) = _alerts(app)
    assert (alert.type, alert.subject) == ("suspicious_input_rate", f"key:{prefix}")
    assert [a.split(":")[0] for a in summary["actions"]] == [
        "revoke_key",
        "collect_evidence",
    ]


def test_alert_is_not_raised_again_while_its_condition_lasts(app, client, watch):
    """Checks that find the same condition extend one alert and act only once."""
    fail_logins(client, 11)
    first = watch.check()
    # Blocked now: these never reach authentication, so add no failures.
    assert fail_logins(client, 5) == [403] * 5
    second = watch.check()
    third = watch.check()

    (alert,) = _alerts(app)
    assert first["new"] == [alert.id]
    assert second["new"] == third["new"] == []
    assert second["open"] == third["open"] == [alert.id]
    assert alert.occurrences == 3
    assert alert.details["count"] == 11
    assert _action_count(app) == 2
    assert len(watch.notified) == 1


def test_alert_is_raised_anew_after_its_quiet_time(app, client, watch):
    """Once the quiet time passes without the condition, it starts a new alert."""
    app.config["ALERT_QUIET_SECONDS"] = 0.5
    fail_logins(client, 11)
    watch.check()
    time.sleep(0.6)

    summary = watch.check()

    first, second = _alerts(app)
    assert summary["new"] == [second.id]
    assert first.occurrences == second.occurrences == 1
    assert len(watch.notified) == 2
