"""Retention: old rows go in bounded batches, new ones stay, repeats do nothing."""

from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from monitoring import retention
from storage.db import get_engine
from storage.db import session
from storage.models import Job
from storage.models import JobCallback
from storage.models import SecurityEvent
from storage.models import WebhookAttempt
from storage.models import WebhookDelivery
from storage.models import WebhookEvent
from storage.models import utcnow
from storage.monitoring import Alert
from storage.monitoring import InferenceBatch
from storage.monitoring import RequestLog
from storage.monitoring import ResponseAction
from storage.monitoring import RetentionRun

DAY = timedelta(days=1)


@pytest.fixture
def database_url(any_database_url):
    """Run this module on every database backend available."""
    return any_database_url


def _request_log(moment):
    return RequestLog(
        created_at=moment,
        method="GET",
        endpoint="jobs.get",
        status=200,
        duration_ms=1.0,
        user_agent_length=10,
    )


def _webhook_rows(job, moment):
    event = WebhookEvent(
        type="classification.succeeded", job_id=job.id, created_at=moment, payload="{}"
    )
    session.add_all(
        [event, JobCallback(job_id=job.id, url="https://8.8.8.8/cb", secret="s")]
    )
    session.flush()
    delivery = WebhookDelivery(
        event_id=event.id,
        api_key_id=None,
        callback_job_id=job.id,
        status="succeeded",
        attempt_count=1,
        created_at=moment,
    )
    session.add(delivery)
    session.flush()
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=1,
            started_at=moment,
            status_code=200,
            latency_ms=5.0,
            outcome="succeeded",
        )
    )


def _seed(app):
    """Rows on both sides of each period; return the count expected to go."""
    now = utcnow()
    rows = []
    jobs = {}
    for age in (366 * DAY, 364 * DAY):
        jobs[age] = [
            Job(queue="standard", text=text, created_at=now - age)
            for text in ("one message", "another")
        ]
        rows += jobs[age]
    rows += [_request_log(now - 91 * DAY) for _ in range(5)]
    rows += [_request_log(now - 89 * DAY) for _ in range(2)]
    rows += [
        InferenceBatch(
            created_at=now - age, queue="standard", batch_size=4, inference_ms=9.0
        )
        for age in (31 * DAY, 31 * DAY, 29 * DAY)
    ]
    rows += [
        SecurityEvent(created_at=now - age, kind="auth_failed", details={})
        for age in (2556 * DAY, 2556 * DAY, 2554 * DAY)
    ]
    old_alert = Alert(
        created_at=now - 2600 * DAY,
        last_seen_at=now - 2600 * DAY,
        type="failed_auth_rate",
        severity="high",
        subject="all",
        dedup_key="failed_auth_rate|all",
        message="old",
    )
    kept_alert = Alert(
        created_at=now - 2600 * DAY,
        last_seen_at=now - 2600 * DAY,
        type="failed_auth_rate",
        severity="high",
        subject="address:192.0.2.1",
        dedup_key="failed_auth_rate|address:192.0.2.1",
        message="still pointed at by a younger action",
    )
    rows += [old_alert, kept_alert]
    with app.app_context():
        session.add_all(rows)
        session.flush()
        session.add(
            ResponseAction(
                created_at=now - 10 * DAY,
                alert_id=kept_alert.id,
                action="block_address",
            )
        )
        # An old and a young job each announced by a webhook event with a
        # delivery, an attempt and a callback: the old one's rows go with it.
        for age in (366 * DAY, 364 * DAY):
            _webhook_rows(jobs[age][0], now - age)
        session.commit()
    return {
        "jobs": 2,
        "webhook_attempts": 1,
        "webhook_deliveries": 1,
        "webhook_events": 1,
        "job_callbacks": 1,
        "request_logs": 5,
        "inference_batches": 2,
        "security_events": 2,
        "evidence": 0,
        "response_actions": 0,
        "alerts": 1,
        "retention_runs": 0,
    }


def _counts(app):
    with app.app_context():
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (
                Job,
                RequestLog,
                InferenceBatch,
                SecurityEvent,
                Alert,
                WebhookEvent,
                WebhookAttempt,
            )
        }


def test_retention_removes_only_expired_rows_and_records_the_run(app):
    """Each table loses what is past its period, in batches; a repeat removes 0."""
    app.config["RETENTION_BATCH_SIZE"] = 2
    expected = _seed(app)

    with app.app_context():
        first = retention.run(session, app.config)
        second = retention.run(session, app.config)
        runs = session.scalars(select(RetentionRun).order_by(RetentionRun.id)).all()

    assert first["removed"] == expected
    assert second["removed"] == dict.fromkeys(expected, 0)
    assert _counts(app) == {
        "jobs": 2,
        "request_logs": 2,
        "inference_batches": 1,
        "security_events": 1,
        "alerts": 1,
        "webhook_events": 1,
        "webhook_attempts": 1,
    }
    assert [(run.status, run.removed) for run in runs] == [
        ("finished", expected),
        ("finished", dict.fromkeys(expected, 0)),
    ]


def test_retention_task_runs_through_celery_and_logs(app, caplog):
    """The Beat task ``maintenance.retention`` runs the same deletion."""
    from tasks.maintenance import retention_run

    expected = _seed(app)
    caplog.set_level("INFO", logger="monitoring.retention")

    result = retention_run.apply().get()

    assert result["removed"] == expected
    (line,) = [r.getMessage() for r in caplog.records if "retention:" in r.getMessage()]
    assert "jobs=2 webhook_attempts=1" in line
    assert "request_logs=5 inference_batches=2" in line


def test_retention_cut_off_mid_run_leaves_whole_batches_and_a_true_record(app):
    """A run that dies mid-table has deleted whole batches only, and says which."""
    app.config["RETENTION_BATCH_SIZE"] = 2
    _seed(app)
    with app.app_context():
        session.add_all(
            [_request_log(utcnow() - 100 * DAY) for _ in range(5)]
        )  # 10 expired request logs in all
        session.commit()
    # DELETEs: a batch of jobs is five statements (attempts, deliveries,
    # events, callbacks, jobs): 2 jobs, then none left; then request logs
    # (2), and the twelfth, the second batch of request logs, fails.
    deletes = []

    def _fail_fourth_delete(conn, clause, *args):
        if str(clause).startswith("DELETE"):
            deletes.append(clause)
            if len(deletes) == 12:
                raise RuntimeError("simulated crash")

    engine = get_engine()
    event.listen(engine, "before_execute", _fail_fourth_delete)
    try:
        with app.app_context(), pytest.raises(RuntimeError, match="simulated crash"):
            retention.run(session, app.config)
    finally:
        event.remove(engine, "before_execute", _fail_fourth_delete)

    with app.app_context():
        session.rollback()
        (cut,) = session.scalars(select(RetentionRun)).all()
        assert cut.status == "running"
        assert cut.removed == {
            "jobs": 2,
            "webhook_attempts": 1,
            "webhook_deliveries": 1,
            "webhook_events": 1,
            "job_callbacks": 1,
            "request_logs": 2,
        }
        assert _counts(app)["request_logs"] == 12 - 2
        rerun = retention.run(session, app.config)
    assert rerun["removed"]["request_logs"] == 8
    assert rerun["removed"]["jobs"] == 0
