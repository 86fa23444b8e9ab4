"""Maintenance tasks, run by Beat on the ``maintenance`` queue.

``maintenance.sweep_queued`` (every ``SWEEP_INTERVAL_SECONDS``) publishes
again the jobs left unfinished (queued, or running with no live task)
past ``SWEEP_QUEUED_AFTER_SECONDS``, whose message may have been lost (a
Redis restart without its append-only file, a task that ran out of
retries on a locked database), and fails those past
``SWEEP_QUEUED_FAIL_AFTER_SECONDS``.
Idempotent: a job is re-sent at most once per threshold (a marker key in
Redis), and a duplicate message finds its job finished and does nothing.

``maintenance.retention`` (every ``RETENTION_INTERVAL_SECONDS``, daily
by default) deletes the rows past their retention period in bounded
batches and records a ``retention_runs`` row and a log line per run.
Idempotent: a repeat finds nothing more. Interrupted, it leaves whole
batches deleted and the run row saying how many ("running" status).
Failures are contained (logged, summarised) so the schedule goes on.
"""

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app

from monitoring import retention
from monitoring import state
from storage import jobs as job_states
from storage.db import session
from tasks import webhooks as webhook_tasks

logger = get_task_logger(__name__)


# Acknowledged on receipt: a run longer than the broker's visibility timeout
# must not be handed to a second worker; a run lost with its worker is
# simply done by the next one. Time limits: MAINTENANCE_* settings.
@shared_task(name="maintenance.retention", ignore_result=True, acks_late=False)
def retention_run():
    """Delete expired rows from every table; return what was removed."""
    try:
        return retention.run(session, current_app.config)
    except Exception as error:  # noqa: BLE001  (a Beat entry contains its failures)
        session.rollback()
        logger.exception("retention: run failed")
        return {"error": type(error).__name__}


_RESENT_KEY = "aicrisisalert:sweep:resent:%s"


@shared_task(name="maintenance.sweep_queued", ignore_result=True, acks_late=False)
def sweep_queued():
    """Re-send or fail jobs left unfinished too long; return the counts."""
    settings = current_app.config
    try:
        failed = _fail_abandoned(settings)
        resent = _resend_stale(settings)
    except Exception as error:  # noqa: BLE001  (a Beat entry contains its failures)
        session.rollback()
        logger.exception("sweep: run failed")
        return {"error": type(error).__name__}

    if failed or resent:
        logger.warning("sweep: resent=%d failed=%d", resent, failed)
    return {"resent": resent, "failed": failed}


def _fail_abandoned(settings):
    jobs = job_states.stale_unfinished(
        session,
        older_than_seconds=settings["SWEEP_QUEUED_FAIL_AFTER_SECONDS"],
        limit=settings["SWEEP_BATCH"],
    )
    if jobs:
        webhook_tasks.enqueue(job_states.fail_abandoned(session, jobs))
    return len(jobs)


def _resend_stale(settings):
    after = settings["SWEEP_QUEUED_AFTER_SECONDS"]
    jobs = job_states.stale_unfinished(
        session, older_than_seconds=after, limit=settings["SWEEP_BATCH"]
    )
    redis_client = state.client_for(settings)
    celery = current_app.extensions["celery"]
    resent = 0
    for job in jobs:
        # Set before publishing: a crash in between loses one re-send, which
        # the next sweep after the marker expires makes up.
        if not redis_client.set(
            _RESENT_KEY % job.id, 1, nx=True, ex=max(1, int(after))
        ):
            continue
        celery.send_task(
            "classify.jobs",
            args=[[job.id]],
            queue=job.queue,
            task_id=job.id,
            ignore_result=True,
        )
        resent += 1
    return resent
