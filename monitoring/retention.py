"""Deleting what is past its retention period, in bounded batches.

Each batch is one short transaction that deletes at most ``batch_size``
rows and adds its count to the run's ``retention_runs`` row, so a run cut
off half-way leaves every table consistent and the run row exact (its
status stays "running"). Cut-offs are fixed when a run starts; a second
run right after finds nothing more to delete.
"""

import logging
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import or_
from sqlalchemy import select

from storage.models import Job
from storage.models import JobCallback
from storage.models import SecurityEvent
from storage.models import WebhookAttempt
from storage.models import WebhookDelivery
from storage.models import WebhookEvent
from storage.models import utcnow
from storage.monitoring import Alert
from storage.monitoring import Evidence
from storage.monitoring import InferenceBatch
from storage.monitoring import RequestLog
from storage.monitoring import ResponseAction
from storage.monitoring import RetentionRun

logger = logging.getLogger(__name__)

# (table, model, time column, setting): evidence and actions go before
# the alerts they point at.
# Jobs take their webhook rows with them (see _delete_jobs_batch): the
# events announcing them, those events' deliveries and attempts, and their
# callback URLs, which all point at the job.
_POLICIES = (
    ("jobs", Job, Job.created_at, "RETENTION_CLASSIFICATIONS_DAYS"),
    ("request_logs", RequestLog, RequestLog.created_at, "RETENTION_REQUEST_LOGS_DAYS"),
    (
        "inference_batches",
        InferenceBatch,
        InferenceBatch.created_at,
        "RETENTION_METRICS_DAYS",
    ),
    (
        "security_events",
        SecurityEvent,
        SecurityEvent.created_at,
        "RETENTION_AUDIT_DAYS",
    ),
    ("evidence", Evidence, Evidence.created_at, "RETENTION_AUDIT_DAYS"),
    (
        "response_actions",
        ResponseAction,
        ResponseAction.created_at,
        "RETENTION_AUDIT_DAYS",
    ),
    ("alerts", Alert, Alert.last_seen_at, "RETENTION_AUDIT_DAYS"),
    ("retention_runs", RetentionRun, RetentionRun.started_at, "RETENTION_AUDIT_DAYS"),
)


def _expired_ids(model, column, cutoff, batch_size):
    query = select(model.id).where(column < cutoff)
    if model is Alert:
        # An alert stays while an action or evidence still points at it.
        query = query.where(
            Alert.id.not_in(
                select(ResponseAction.alert_id).where(
                    ResponseAction.alert_id.is_not(None)
                )
            ),
            Alert.id.not_in(
                select(Evidence.alert_id).where(Evidence.alert_id.is_not(None))
            ),
        )
    return query.order_by(model.id).limit(batch_size)


def _delete_jobs_batch(session, cutoff, batch_size, removed):
    """Delete one batch of expired jobs and the webhook rows pointing at them.

    Every statement selects the same batch (the ids are not read first), so
    the first DELETE takes SQLite's write lock and nothing reads in between.
    Returns the jobs removed; the webhook rows are added to ``removed``.
    """
    jobs = _expired_ids(Job, Job.created_at, cutoff, batch_size)
    events = select(WebhookEvent.id).where(WebhookEvent.job_id.in_(jobs))
    deliveries = select(WebhookDelivery.id).where(
        or_(
            WebhookDelivery.event_id.in_(events),
            WebhookDelivery.callback_job_id.in_(jobs),
        )
    )
    steps = (
        (
            "webhook_attempts",
            delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)),
        ),
        (
            "webhook_deliveries",
            delete(WebhookDelivery).where(WebhookDelivery.id.in_(deliveries)),
        ),
        ("webhook_events", delete(WebhookEvent).where(WebhookEvent.id.in_(events))),
        ("job_callbacks", delete(JobCallback).where(JobCallback.job_id.in_(jobs))),
    )
    for table, statement in steps:
        count = session.execute(
            statement.execution_options(synchronize_session=False)
        ).rowcount
        removed[table] = removed.get(table, 0) + count
    statement = delete(Job).where(Job.id.in_(jobs))
    return session.execute(
        statement.execution_options(synchronize_session=False)
    ).rowcount


def run(session, settings, *, now=None):
    """Delete expired rows from every table; return ``{table: removed}``."""
    now = now or utcnow()
    batch_size = int(settings["RETENTION_BATCH_SIZE"])
    record = RetentionRun(started_at=now, status="running", removed={})
    session.add(record)
    session.commit()
    removed = {}
    for table, model, column, setting in _POLICIES:
        cutoff = now - timedelta(days=int(settings[setting]))
        removed[table] = 0
        while model is Job:
            count = _delete_jobs_batch(session, cutoff, batch_size, removed)
            removed[table] += count
            record.removed = dict(removed)
            session.commit()
            if count < batch_size:
                break
        while model is not Job:
            # One statement per batch: on SQLite a read followed by a
            # write in one transaction can fail when another writer got in
            # between; a single DELETE takes the write lock at once.
            expired = _expired_ids(model, column, cutoff, batch_size)
            statement = (
                delete(model)
                .where(model.id.in_(expired))
                .execution_options(synchronize_session=False)
            )
            count = session.execute(statement).rowcount
            removed[table] += count
            record.removed = dict(removed)
            session.commit()
            if count < batch_size:
                break
    record.removed = removed
    record.status = "finished"
    record.finished_at = utcnow()
    session.commit()
    logger.info(
        "retention: finished run=%d removed=%s",
        record.id,
        " ".join(f"{table}={count}" for table, count in removed.items()),
    )
    return {"run": record.id, "removed": removed}
