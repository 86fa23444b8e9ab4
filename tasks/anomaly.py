"""Anomaly tasks, run by Beat on the ``maintenance`` queue.

``anomaly.check`` (every ``ANOMALY_CHECK_INTERVAL_SECONDS``, a minute by
default) evaluates the alert rules, raises de-duplicated alerts, runs the
automatic response and hands new alerts to the webhook hook. One check
runs at a time (a Redis lock); a check that finds the lock taken does
nothing. It is safe to repeat: an alert already open is only extended.

``anomaly.refit`` (every ``ANOMALY_REFIT_INTERVAL_SECONDS``, daily)
fits the IsolationForest on the recent baseline and replaces the saved
model atomically; with too little traffic it keeps the old one.

Both contain their failures (logged with the traceback, a summary with
the error returned) so that one bad run does not break the schedule.
"""

from celery import shared_task
from celery.utils.log import get_task_logger
from flask import current_app

from monitoring import checks
from monitoring import state
from storage.db import session
from tasks import alerts as alert_hook

logger = get_task_logger(__name__)

_LOCK = state.KEY_PREFIX + "lock:anomaly-check"


@shared_task(name="anomaly.check", ignore_result=True, acks_late=False)
def check():
    """Run one anomaly check; return a summary."""
    settings = current_app.config
    client = state.client_for(settings)
    lock = client.lock(_LOCK, timeout=settings["ANOMALY_CHECK_INTERVAL_SECONDS"] * 2)
    if not lock.acquire(blocking=False):
        logger.info("anomaly: check skipped, another is running")
        return {"skipped": True}

    try:
        summary = checks.run_check(session, client, settings, notify=alert_hook.notify)
    except Exception as error:  # noqa: BLE001  (a Beat entry contains its failures)
        session.rollback()
        logger.exception("anomaly: check failed")
        return {"error": type(error).__name__}
    finally:
        lock.release()
    logger.info(
        "anomaly: check done findings=%d new=%d open=%d actions=%d",
        summary["findings"],
        len(summary["new"]),
        len(summary["open"]),
        len(summary["actions"]),
    )
    return summary


@shared_task(name="anomaly.refit", ignore_result=True, acks_late=False)
def refit():
    """Re-fit the request anomaly detector on the recent baseline."""
    try:
        return checks.run_refit(session, current_app.config)
    except Exception as error:  # noqa: BLE001  (a Beat entry contains its failures)
        session.rollback()
        logger.exception("anomaly: refit failed")
        return {"error": type(error).__name__}
