"""Webhook events and deliveries: creating them, leasing them, recording attempts.

The database is the schedule. A delivery that is due has ``status =
'pending'`` and ``next_attempt_at <= now``; whoever enqueues it first takes
a lease (a token and an expiry) in one conditional UPDATE, and the worker
acts only on the message that carries the current token. So a second
dispatcher, a message redelivered by the broker, or an enqueue racing the
dispatcher never sends the same attempt twice, and a message lost with a
dead worker is re-enqueued by the dispatcher once its lease runs out.
"""

import json
import random
import uuid
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from storage import serialize
from storage.models import JobCallback
from storage.models import WebhookAttempt
from storage.models import WebhookDelivery
from storage.models import WebhookEndpoint
from storage.models import WebhookEvent
from storage.models import as_utc
from storage.models import utcnow

FINAL_JOB_STATUSES = ("succeeded", "failed")


def event_type_for(job):
    """Return the event type a job's final state announces."""
    return f"classification.{job.status}"


def event_body(*, event_id, event_type, created, data):
    """Return the JSON text of an event, exactly as it is sent."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created": as_utc(created).isoformat(),
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _subscribers(session, key_ids):
    if not key_ids:
        return {}
    rows = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.api_key_id.in_(key_ids),
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.deleted_at.is_(None),
        )
    ).all()
    by_key = {}
    for endpoint in rows:
        by_key.setdefault(endpoint.api_key_id, []).append(endpoint)
    return by_key


def record_job_events(session, jobs, *, now=None):
    """Add the events and deliveries for jobs that just finished; do not commit.

    One event per finished job that has a callback URL or an endpoint of
    its key subscribed to the event's type; one delivery per target. The
    caller commits with the job's own state change, so an event exists if
    and only if the state it announces does, and enqueues the returned ids
    only after that commit.

    Returns:
        The ids of the new deliveries.
    """
    finished = [job for job in jobs if job.status in FINAL_JOB_STATUSES]
    if not finished:
        return []

    now = now or utcnow()
    callbacks = {
        callback.job_id: callback
        for callback in session.scalars(
            select(JobCallback).where(JobCallback.job_id.in_([j.id for j in finished]))
        )
    }
    endpoints = _subscribers(session, {j.api_key_id for j in finished} - {None})
    deliveries = []
    for job in finished:
        event_type = event_type_for(job)
        targets = [
            endpoint
            for endpoint in endpoints.get(job.api_key_id, [])
            if event_type in endpoint.event_types
        ]
        callback = callbacks.get(job.id)
        if not targets and callback is None:
            continue

        event_id = str(uuid.uuid4())
        session.add(
            WebhookEvent(
                id=event_id,
                type=event_type,
                job_id=job.id,
                created_at=now,
                payload=event_body(
                    event_id=event_id,
                    event_type=event_type,
                    created=now,
                    data=serialize.job_json(job),
                ),
            )
        )
        for endpoint in targets:
            deliveries.append(
                WebhookDelivery(
                    event_id=event_id,
                    api_key_id=endpoint.api_key_id,
                    endpoint_id=endpoint.id,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        if callback is not None:
            deliveries.append(
                WebhookDelivery(
                    event_id=event_id,
                    api_key_id=job.api_key_id,
                    callback_job_id=job.id,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    for delivery in deliveries:
        delivery.id = str(uuid.uuid4())
    # Events first: without relationships the ORM does not order the inserts.
    session.flush()
    session.add_all(deliveries)
    return [delivery.id for delivery in deliveries]


def record_alert_event(session, alert, *, now=None):
    """Add the event and deliveries announcing a new alert; do not commit.

    Only endpoints of admin keys (those that may manage users) subscribed
    to ``alert.<type>`` receive it. Returns the ids of the new deliveries.
    """
    from security import roles
    from storage.models import ApiKey

    event_type = f"alert.{alert['type']}"
    admin_roles = [r for r in roles.ROLES if roles.allows(r, roles.MANAGE_USERS)]
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .join(ApiKey, ApiKey.id == WebhookEndpoint.api_key_id)
        .where(
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.deleted_at.is_(None),
            ApiKey.revoked_at.is_(None),
            ApiKey.role.in_(admin_roles),
        )
    ).all()
    targets = [e for e in endpoints if event_type in e.event_types]
    if not targets:
        return []

    now = now or utcnow()
    event_id = str(uuid.uuid4())
    session.add(
        WebhookEvent(
            id=event_id,
            type=event_type,
            job_id=None,
            created_at=now,
            payload=event_body(
                event_id=event_id, event_type=event_type, created=now, data=alert
            ),
        )
    )
    session.flush()
    deliveries = [
        WebhookDelivery(
            id=str(uuid.uuid4()),
            event_id=event_id,
            api_key_id=endpoint.api_key_id,
            endpoint_id=endpoint.id,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in targets
    ]
    session.add_all(deliveries)
    return [delivery.id for delivery in deliveries]


def lease(session, *, lease_seconds, delivery_ids=None, limit=500, now=None):
    """Take leases on due deliveries and commit; return ``[(id, token), ...]``.

    With ``delivery_ids``, only those are considered (the enqueue right
    after a commit); without, the ``limit`` most overdue (the dispatcher).
    A delivery whose lease has not expired is skipped: its message is on
    the queue or running.
    """
    now = now or utcnow()
    due = (
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(
            WebhookDelivery.lease_expires_at.is_(None),
            WebhookDelivery.lease_expires_at <= now,
        ),
    )
    query = select(WebhookDelivery.id).where(*due)
    if delivery_ids is not None:
        query = query.where(WebhookDelivery.id.in_(list(delivery_ids)))
    query = query.order_by(WebhookDelivery.next_attempt_at).limit(limit)
    candidates = session.scalars(query).all()

    taken = []
    until = now + timedelta(seconds=lease_seconds)
    for delivery_id in candidates:
        token = str(uuid.uuid4())
        # The same conditions again, so two leasers racing cannot both win.
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, *due)
            .values(lease_token=token, lease_expires_at=until)
        )
        if result.rowcount == 1:
            taken.append((delivery_id, token))
    session.commit()
    return taken


def release(session, *, delivery_id, token):
    """Give a lease back (its message was never sent) and commit."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.lease_token == token)
        .values(lease_token=None, lease_expires_at=None)
    )
    session.commit()


def start_attempt(session, *, delivery_id, token, lease_seconds, now=None):
    """Return the delivery if ``token`` still holds its lease, renewing it.

    None means this message is stale (another holds the lease, or the
    delivery is finished) and must do nothing.
    """
    now = now or utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.lease_token == token,
            WebhookDelivery.status == "pending",
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )
    session.commit()
    if result.rowcount != 1:
        return None
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def live_secrets(endpoint, *, now=None):
    """Return the endpoint's secrets to sign with, newest first."""
    now = now or utcnow()
    secrets = [endpoint.secret]
    expires = as_utc(endpoint.previous_secret_expires_at)
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


def target_of(session, delivery, *, now=None):
    """Return ``(url, secrets, None)`` for a delivery, or ``(None, None, why)``."""
    if delivery.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None:
            return None, None, "the endpoint was deleted"
        if not endpoint.enabled:
            return None, None, "the endpoint is disabled"
        return endpoint.url, live_secrets(endpoint, now=now), None

    callback = session.get(JobCallback, delivery.callback_job_id)
    if callback is None:
        return None, None, "the job's callback was removed"
    return callback.url, [callback.secret], None


def retry_delay_seconds(attempt, *, base_seconds, max_seconds, jitter, rng=random):
    """Return the wait after failed attempt number ``attempt`` (1-based).

    Exponential: ``base * 2**(attempt - 1)``, capped at ``max_seconds``,
    then scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that
    deliveries failed together do not retry together.
    """
    nominal = min(max_seconds, base_seconds * 2 ** (attempt - 1))
    return nominal * rng.uniform(1 - jitter, 1 + jitter)


def record_attempt(
    session, *, delivery, outcome, started_at, max_attempts, delay_seconds, now=None
):
    """Log an attempt and move the delivery on: done, scheduled again, or dead.

    ``delay_seconds(attempt_number)`` gives the wait before the next try;
    a ``Retry-After`` longer than that wins. Commits.

    Returns:
        The attempt's outcome: ``succeeded``, ``retry`` or ``dead``.
    """
    now = now or utcnow()
    delivery.attempt_count += 1
    number = delivery.attempt_count
    if outcome.ok:
        result = "succeeded"
    elif outcome.retryable and number < max_attempts:
        result = "retry"
    else:
        result = "dead"

    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=number,
            started_at=started_at,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
            outcome=result,
        )
    )
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.lease_token = None
    delivery.lease_expires_at = None
    if result == "retry":
        wait = delay_seconds(number)
        if outcome.retry_after_seconds is not None:
            wait = max(wait, outcome.retry_after_seconds)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
    else:
        delivery.status = result
        delivery.next_attempt_at = None
        delivery.finished_at = now
    session.commit()
    return result


def kill(session, *, delivery, reason, now=None):
    """Dead-letter a delivery without an attempt (its endpoint is gone); commit."""
    delivery.status = "dead"
    delivery.last_error = reason
    delivery.next_attempt_at = None
    delivery.lease_token = None
    delivery.lease_expires_at = None
    delivery.finished_at = now or utcnow()
    session.commit()


def redeliver(session, *, delivery, now=None):
    """Queue the delivery's event again to the same target; return the new row.

    The new delivery sends the stored event unchanged, so the receiver sees
    the same event id and can drop it if it already has it. Commits.
    """
    now = now or utcnow()
    copy = WebhookDelivery(
        id=str(uuid.uuid4()),
        event_id=delivery.event_id,
        api_key_id=delivery.api_key_id,
        endpoint_id=delivery.endpoint_id,
        callback_job_id=delivery.callback_job_id,
        redelivery_of=delivery.id,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(copy)
    session.commit()
    return copy


def cancel_pending(session, *, endpoint_id, reason, now=None):
    """Dead-letter an endpoint's pending deliveries (it was deleted); no commit."""
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == "pending",
        )
        .values(
            status="dead",
            last_error=reason,
            next_attempt_at=None,
            lease_token=None,
            lease_expires_at=None,
            finished_at=now or utcnow(),
        )
    )


def attempts_of(session, delivery_ids):
    """Return ``{delivery_id: [attempts in order]}`` for the given deliveries."""
    by_delivery = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return by_delivery
    rows = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
    ).all()
    for attempt in rows:
        by_delivery[attempt.delivery_id].append(attempt)
    return by_delivery
