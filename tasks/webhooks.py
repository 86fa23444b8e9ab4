"""Webhook delivery tasks, on the ``webhooks`` queue and its own worker.

``webhooks.dispatch`` (run by Beat every few seconds) leases the
deliveries that are due and enqueues one ``webhooks.deliver`` each.
``webhooks.deliver`` makes one attempt and writes back what happened:
done, dead, or the time of the next attempt. Waits between attempts live
in the database, never in a Celery countdown, so no message sits on the
broker for longer than the visibility timeout.

Early acks on purpose: the lease in the database, not the broker, decides
who sends. A message lost with a dead worker is replaced by the dispatcher
once its lease expires; one delivered twice carries a stale token the
second time and does nothing.
"""

import kombu.exceptions
import redis.exceptions
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy.exc import OperationalError

from monitoring import metrics
from monitoring import state as monitoring_state
from security import events
from security import outbound
from security import signing
from storage import webhooks
from storage.db import session
from storage.models import WebhookEvent
from storage.models import utcnow

logger = get_task_logger(__name__)

QUEUE = "webhooks"
DELIVER_TASK = "webhooks.deliver"
USER_AGENT = "AICrisisAlert-Webhooks/1.0"
_PUBLISH_ERRORS = (kombu.exceptions.OperationalError, redis.exceptions.RedisError)
_TIMED_OUT = "the attempt ran past the task's time limit"


def _setting(name):
    return current_app.config[f"WEBHOOK_{name}"]


def publish(celery, leases):
    """Send one deliver message per ``(delivery_id, token)``; return how many.

    A publish that fails is logged and its lease given back, so the next
    dispatch tries again.
    """
    sent = 0
    for delivery_id, token in leases:
        try:
            celery.send_task(
                DELIVER_TASK,
                args=[delivery_id, token],
                queue=QUEUE,
                ignore_result=True,
                retry=False,
            )
        except _PUBLISH_ERRORS as error:
            logger.warning(
                "webhooks: publish failed delivery=%s error=%s", delivery_id, error
            )
            webhooks.release(session, delivery_id=delivery_id, token=token)
            continue
        sent += 1
    return sent


def enqueue(delivery_ids):
    """Lease and enqueue deliveries created by a commit that just happened.

    Called by other tasks after their commit. Never raises for a broker or
    database fault: the dispatcher covers whatever is not sent here.
    """
    if not delivery_ids:
        return 0
    try:
        leases = webhooks.lease(
            session,
            lease_seconds=_setting("LEASE_SECONDS"),
            delivery_ids=delivery_ids,
        )
    except OperationalError as error:
        session.rollback()
        logger.warning(
            "webhooks: lease failed deliveries=%d error=%s", len(delivery_ids), error
        )
        return 0
    return publish(current_app.extensions["celery"], leases)


def enqueue_event(event_type, payload):
    """Create and enqueue the deliveries of an alert event (the alert hook).

    Called by ``anomaly.check`` for each new alert; ``payload`` is the
    alert's dict. Returns how many deliveries were enqueued.
    """
    delivery_ids = webhooks.record_alert_event(session, payload)
    session.commit()
    logger.info(
        "webhooks: alert event type=%s deliveries=%d", event_type, len(delivery_ids)
    )
    return enqueue(delivery_ids)


@shared_task(name="webhooks.dispatch", ignore_result=True)
def dispatch():
    """Enqueue every delivery that is due; return a summary.

    Beat's entry point: a failure is contained (logged, rolled back) so one
    bad run does not stop the schedule, and the next run retries.
    """
    try:
        leases = webhooks.lease(
            session,
            lease_seconds=_setting("LEASE_SECONDS"),
            limit=_setting("DISPATCH_BATCH"),
        )
    except OperationalError as error:
        session.rollback()
        logger.warning("webhooks: dispatch could not lease error=%s", error)
        return {"due": 0, "sent": 0}
    sent = publish(current_app.extensions["celery"], leases)
    if leases:
        logger.info("webhooks: dispatched due=%d sent=%d", len(leases), sent)
    return {"due": len(leases), "sent": sent}


def _headers(event, delivery, secrets, body):
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.SIGNATURE_HEADER: signing.signature_header(secrets, body),
        "AICrisisAlert-Event-Id": event.id,
        "AICrisisAlert-Event-Type": event.type,
        "AICrisisAlert-Delivery-Id": delivery.id,
        "AICrisisAlert-Attempt": str(delivery.attempt_count + 1),
    }


def _delay(attempt):
    return webhooks.retry_delay_seconds(
        attempt,
        base_seconds=_setting("RETRY_BASE_SECONDS"),
        max_seconds=_setting("RETRY_MAX_SECONDS"),
        jitter=_setting("RETRY_JITTER"),
    )


def _capped_outcome(outcome):
    """Cap a receiver's Retry-After at the longest wait we allow."""
    if outcome.retry_after_seconds is None:
        return outcome
    capped = min(outcome.retry_after_seconds, _setting("RETRY_MAX_SECONDS"))
    return outbound.Outcome(
        outcome.ok,
        outcome.status_code,
        outcome.latency_ms,
        outcome.error,
        outcome.retryable,
        retry_after_seconds=capped,
    )


def attempt(delivery):
    """Make one attempt of a leased ``delivery``; record it and return the result."""
    url, secrets, problem = webhooks.target_of(session, delivery)
    if problem:
        webhooks.kill(session, delivery=delivery, reason=problem)
        logger.info("webhooks: dropped delivery=%s reason=%s", delivery.id, problem)
        return "dead"

    event = session.get(WebhookEvent, delivery.event_id)
    body = event.payload.encode("utf-8")
    started_at = utcnow()
    try:
        outcome = outbound.post(
            url,
            body,
            _headers(event, delivery, secrets, body),
            allow_private=_setting("ALLOW_PRIVATE"),
            connect_timeout=_setting("CONNECT_TIMEOUT_SECONDS"),
            read_timeout=_setting("READ_TIMEOUT_SECONDS"),
            max_response_bytes=_setting("MAX_RESPONSE_BYTES"),
            context=outbound.tls_context(_setting("CA_FILE")),
        )
    except SoftTimeLimitExceeded:
        elapsed = (utcnow() - started_at).total_seconds() * 1000
        outcome = outbound.Outcome(False, None, elapsed, _TIMED_OUT, True)
        _record(delivery, outcome, started_at)
        logger.warning("webhooks: soft time limit delivery=%s", delivery.id)
        raise

    if outcome.blocked:
        events.record(
            session,
            "webhook_blocked",
            endpoint=DELIVER_TASK,
            details={"delivery_id": delivery.id, "reason": outcome.error},
            commit=False,
        )
    return _record(delivery, _capped_outcome(outcome), started_at)


def _record(delivery, outcome, started_at):
    result = webhooks.record_attempt(
        session,
        delivery=delivery,
        outcome=outcome,
        started_at=started_at,
        max_attempts=_setting("MAX_ATTEMPTS"),
        delay_seconds=_delay,
    )
    metrics.safely(
        metrics.count_webhook_attempt,
        monitoring_state.client_for(current_app.config),
        result,
    )
    log = logger.info if result != "dead" else logger.warning
    log(
        "webhooks: attempt delivery=%s number=%d status=%s latency_ms=%.1f "
        "result=%s error=%s",
        delivery.id,
        delivery.attempt_count,
        outcome.status_code,
        outcome.latency_ms,
        result,
        outcome.error,
    )
    return result


@shared_task(
    name="webhooks.deliver",
    acks_late=False,
    ignore_result=True,
    # A locked database is worth a retry. If it struck after the POST, the
    # retry sends again: at least once, and receivers drop it by event id.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def deliver(delivery_id, token):
    """Attempt the delivery if ``token`` still holds its lease."""
    delivery = webhooks.start_attempt(
        session,
        delivery_id=delivery_id,
        token=token,
        lease_seconds=_setting("LEASE_SECONDS"),
    )
    if delivery is None:
        logger.info("webhooks: stale message delivery=%s", delivery_id)
        return "stale"
    return attempt(delivery)
