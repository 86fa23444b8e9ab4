"""Maintenance tasks, run by Beat on the ``maintenance`` queue.

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
from storage.db import session

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
