"""Webhook endpoints of one API key, and their deliveries."""

from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select

from security import signing
from storage import webhooks
from storage.models import WebhookDelivery
from storage.models import WebhookEndpoint
from storage.models import WebhookEvent
from storage.models import as_utc
from storage.models import utcnow

_DELETED = "the endpoint was deleted"


def count(session, *, api_key_id):
    """Return how many live endpoints the key has."""
    return session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(
            WebhookEndpoint.api_key_id == api_key_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
    )


def create(session, *, api_key_id, url, event_types, description, enabled):
    """Register an endpoint with a fresh secret and commit; return it."""
    now = utcnow()
    endpoint = WebhookEndpoint(
        api_key_id=api_key_id,
        url=url,
        event_types=list(event_types),
        description=description,
        enabled=enabled,
        secret=signing.new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.commit()
    return endpoint


def list_(session, *, api_key_id):
    """Return the key's live endpoints, oldest first."""
    return session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.api_key_id == api_key_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()


def get(session, *, api_key_id, endpoint_id):
    """Return the key's live endpoint ``endpoint_id``, or None."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if (
        endpoint is None
        or endpoint.api_key_id != api_key_id
        or endpoint.deleted_at is not None
    ):
        return None
    return endpoint


def update(session, *, endpoint, changes):
    """Apply ``changes`` (already validated) and commit."""
    for name, value in changes.items():
        setattr(endpoint, name, list(value) if name == "event_types" else value)
    endpoint.updated_at = utcnow()
    session.commit()
    return endpoint


def delete(session, *, endpoint):
    """Delete the endpoint; its pending deliveries are dead-lettered. Commits."""
    now = utcnow()
    endpoint.deleted_at = now
    endpoint.enabled = False
    webhooks.cancel_pending(session, endpoint_id=endpoint.id, reason=_DELETED, now=now)
    session.commit()


def rotate_secret(session, *, endpoint, overlap_seconds):
    """Replace the secret; the old one keeps signing for ``overlap_seconds``."""
    now = utcnow()
    endpoint.previous_secret = endpoint.secret if overlap_seconds else None
    endpoint.previous_secret_expires_at = (
        now + timedelta(seconds=overlap_seconds) if overlap_seconds else None
    )
    endpoint.secret = signing.new_secret()
    endpoint.secret_rotated_at = now
    endpoint.updated_at = now
    session.commit()
    return endpoint


def to_dict(endpoint, *, self_url, secret=False):
    """Return the endpoint in the shape of ``EndpointSchema``."""
    body = {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "created_at": as_utc(endpoint.created_at),
        "updated_at": as_utc(endpoint.updated_at),
        "secret_rotated_at": as_utc(endpoint.secret_rotated_at),
        "previous_secret_expires_at": as_utc(endpoint.previous_secret_expires_at),
        "links": {"self": self_url, "deliveries": f"{self_url}/deliveries"},
    }
    if secret:
        body["secret"] = endpoint.secret
    return body


def list_deliveries(session, *, api_key_id, endpoint_id=None, status=None, limit=50):
    """Return the key's deliveries, newest first, with their events."""
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.api_key_id == api_key_id)
    )
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(
        limit
    )
    return session.execute(query).all()


def get_delivery(session, *, api_key_id, delivery_id):
    """Return ``(delivery, event)`` if it is the key's, else None."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.api_key_id != api_key_id:
        return None
    return delivery, session.get(WebhookEvent, delivery.event_id)


def delivery_dicts(session, rows, *, self_url_for):
    """Return ``(delivery, event)`` rows in the shape of ``DeliverySchema``."""
    attempts = webhooks.attempts_of(session, [delivery.id for delivery, _ in rows])
    return [
        {
            "id": delivery.id,
            "event_id": event.id,
            "event_type": event.type,
            "job_id": event.job_id,
            "endpoint_id": delivery.endpoint_id,
            "target": "endpoint" if delivery.endpoint_id else "callback_url",
            "status": delivery.status,
            "attempt_count": delivery.attempt_count,
            "next_attempt_at": as_utc(delivery.next_attempt_at),
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "created_at": as_utc(delivery.created_at),
            "finished_at": as_utc(delivery.finished_at),
            "redelivery_of": delivery.redelivery_of,
            "attempts": [
                {
                    "number": attempt.number,
                    "started_at": as_utc(attempt.started_at),
                    "status_code": attempt.status_code,
                    "latency_ms": attempt.latency_ms,
                    "error": attempt.error,
                    "outcome": attempt.outcome,
                }
                for attempt in attempts[delivery.id]
            ],
            "links": {"self": self_url_for(delivery.id)},
        }
        for delivery, event in rows
    ]
