"""The anomaly detector on real HumAID tweets: quiet on ordinary traffic.

Traffic spread over days cannot be sent in real time, so these requests
are written as request-log rows with their times set (the same rows the
API writes, with the lengths of real tweets and of real clients' user
agents). Fitting, feature extraction, scoring and the alert rule are the
real ones, reading those rows from the database.
"""

import csv
import random
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest

from monitoring import checks
from monitoring import detector as detector_lib
from monitoring import rules
from storage.db import session
from storage.monitoring import RequestLog
from tests.conftest import HUMAID_DIR

USER_AGENTS = (
    "python-requests/2.32.3",
    "aicrisisalert-client/0.1",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
)
CLIENTS = [f"c1ient{n:02d}" for n in range(len(USER_AGENTS))]


def _tweets(name, limit):
    with open(HUMAID_DIR / name, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["tweet_text"] for _, row in zip(range(limit), rows, strict=False)]


def _ordinary(texts, *, start, days, rng):
    """Requests of six clients at random times over ``days``, one per tweet."""
    span = days * 86400
    rows = []
    for text in texts:
        client = rng.randrange(len(CLIENTS))
        rows.append(
            RequestLog(
                created_at=start + timedelta(seconds=rng.uniform(0, span)),
                key_prefix=CLIENTS[client],
                client_address="127.0.0.1",
                method="POST",
                endpoint="jobs.submit",
                status=202,
                duration_ms=5.0,
                text_length=len(text),
                user_agent_length=len(USER_AGENTS[client]),
            )
        )
    return rows


def _burst(*, end, count, seconds):
    """One key sending ``count`` long texts with no user agent in ``seconds``."""
    return [
        RequestLog(
            created_at=end - timedelta(seconds=seconds * n / count),
            key_prefix="b4d4c70r",
            client_address="192.0.2.66",
            method="POST",
            endpoint="jobs.submit",
            status=202,
            duration_ms=5.0,
            text_length=9000 + n,
            user_agent_length=0,
        )
        for n in range(count)
    ]


@pytest.fixture
def fitted(app, tmp_path):
    """A detector fitted by the real refit on a week of train.tsv traffic."""
    app.config["ANOMALY_MODEL_PATH"] = str(tmp_path / "anomaly.joblib")
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    rng = random.Random(7)
    with app.app_context():
        session.add_all(
            _ordinary(
                _tweets("train.tsv", 4000),
                start=now - timedelta(days=7),
                days=7,
                rng=rng,
            )
        )
        session.commit()
        summary = checks.run_refit(session, app.config, now=now)
    assert summary == {"fitted": True, "submits": 4000}
    return now, detector_lib.load(app.config["ANOMALY_MODEL_PATH"])


def test_ordinary_humaid_traffic_is_rarely_flagged(app, fitted):
    """Of 3,000 test.tsv tweets sent at a normal rate, at most 3 % score > 0.8."""
    now, detector = fitted
    rows = _ordinary(
        _tweets("test.tsv", 3000), start=now, days=7, rng=random.Random(11)
    )
    with app.app_context():
        session.add_all(rows)
        session.commit()
        matrix, scored = detector_lib.features(rows)
    scores = detector.score(matrix)

    flagged = float((scores > app.config["ALERT_ANOMALY_SCORE"]).mean())
    print(f"ordinary traffic flagged: {flagged:.2%} of {len(scored)}")
    assert len(scored) == 3000
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    assert flagged <= 0.03


def test_ordinary_traffic_raises_no_anomaly_alert_all_week(app, fitted):
    """The rule, run every 30 minutes over a week of ordinary traffic, finds nothing."""
    now, detector = fitted
    rows = _ordinary(
        _tweets("test.tsv", 3000), start=now, days=7, rng=random.Random(11)
    )
    with app.app_context():
        session.add_all(rows)
        session.commit()
        findings = [
            finding
            for step in range(1, 7 * 48 + 1)
            for finding in rules.anomalous_requests(
                session,
                now=now + timedelta(minutes=30 * step),
                detector=detector,
                threshold=app.config["ALERT_ANOMALY_SCORE"],
                min_requests=app.config["ALERT_ANOMALY_MIN_REQUESTS"],
                window_seconds=app.config["ANOMALY_WINDOW_SECONDS"],
            )
        ]

    assert findings == []


def test_abnormal_burst_is_flagged_and_alerted(app, fitted):
    """300 long, agent-less submits from one key in 2 minutes: flagged, alerted."""
    now, detector = fitted
    end = now + timedelta(days=2)
    rows = _burst(end=end, count=300, seconds=120)
    rows += _ordinary(
        _tweets("dev.tsv", 200),
        start=end - timedelta(minutes=10),
        days=10 / 1440,
        rng=random.Random(3),
    )
    with app.app_context():
        session.add_all(rows)
        session.commit()
        findings = rules.anomalous_requests(
            session,
            now=end,
            detector=detector,
            threshold=0.8,
            min_requests=5,
            window_seconds=300,
        )
        matrix, _ = detector_lib.features(rows, scored=rows[:300])
    burst_scores = detector.score(matrix)

    print(f"burst flagged: {(burst_scores > 0.8).mean():.2%}")
    assert (burst_scores > 0.8).mean() >= 0.9
    assert [f.subject for f in findings] == ["key:b4d4c70r"]
    assert findings[0].details["flagged"] >= 270
