"""Tables: classification jobs, API keys, security events and webhooks."""

import uuid
from datetime import UTC
from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from storage.db import Base

QUEUES = ("emergency", "standard")
STATUSES = ("queued", "running", "succeeded", "failed")
ROLES = ("admin", "operator", "viewer", "api_user")


def utcnow():
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment):
    """Return ``moment`` as an aware UTC datetime (SQLite drops the zone)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def new_id():
    """Return a fresh random job id."""
    return str(uuid.uuid4())


class ApiKey(Base):
    """An API key: only its public prefix and a keyed hash are stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    # Rotation keeps the row (and so the prefix, the jobs and the rate-limit
    # bucket) and replaces the secret; the old secret's hash stays valid
    # until previous_valid_until, the grace period.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    previous_key_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )


class Job(Base):
    """One message to classify and, once done, its result."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    queue: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(50))
    location: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    category: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None] = mapped_column(Float)
    scores: Mapped[dict | None] = mapped_column(JSON)
    model_version: Mapped[str | None] = mapped_column(String(64))
    truncated: Mapped[bool | None] = mapped_column(Boolean)
    needs_review: Mapped[bool | None] = mapped_column(Boolean)
    queue_ms: Mapped[float | None] = mapped_column(Float)
    inference_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # Signs of a model-poisoning attempt seen in the text when it was
    # accepted (e.g. ["zero_width"]); the job still runs. None when clean.
    input_flags: Mapped[list | None] = mapped_column(JSON)
    # The callback_url it was submitted with, if any.
    callback: Mapped["JobCallback | None"] = relationship()


class SecurityEvent(Base):
    """One security-relevant happening: a failed login, a limit hit, a ban."""

    __tablename__ = "security_events"
    __table_args__ = (Index("ix_security_events_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    # e.g. auth_failed, forbidden, rate_limited, banned, suspicious_input
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10), default="warning")
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    client_address: Mapped[str | None] = mapped_column(String(64))
    endpoint: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict | None] = mapped_column(JSON)


WEBHOOK_EVENT_TYPES = ("classification.succeeded", "classification.failed")
# Alert events, one per alert type of the watch (monitoring/rules.py), sent
# only to endpoints of keys that may manage users (admins): alerts name
# keys and addresses.
ALERT_EVENT_TYPES = (
    "alert.failed_auth_rate",
    "alert.rate_limit_violations",
    "alert.suspicious_input_rate",
    "alert.anomalous_requests",
)
# pending: waiting for its next attempt; succeeded: a 2xx arrived; dead: no
# more automatic attempts (retries used up, a refusal, or a blocked address).
DELIVERY_STATUSES = ("pending", "succeeded", "dead")


class WebhookEndpoint(Base):
    """A URL an API key registered to receive events, and its signing secrets.

    TODO: the secrets are stored as written, because signing needs them in
    the clear (a hash would not do); acceptable while the database is as
    closely held as the key pepper. Encrypt them at rest with the field
    encryption key once that lands in security/.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_key", "api_key_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(100))
    # The secret before the last rotation, still signed with until it expires.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobCallback(Base):
    """The ``callback_url`` a job was submitted with, and its one-off secret."""

    __tablename__ = "job_callbacks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(100))


class WebhookEvent(Base):
    """One event, stored once: every delivery and redelivery sends this body."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    # The exact JSON bytes sent (as text), so redeliveries are identical.
    payload: Mapped[str] = mapped_column(Text)


class WebhookDelivery(Base):
    """One event on its way to one URL: state, schedule and lease."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
        Index("ix_webhook_deliveries_key", "api_key_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"))
    # Who may see it: the endpoint's key, or the key that submitted the job.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    # Exactly one of the two is set: a registered endpoint or a job callback.
    endpoint_id: Mapped[str | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    callback_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("job_callbacks.job_id")
    )
    # The delivery this one was redelivered from, by hand.
    redelivery_of: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set while a message for this delivery is on the queue or running; a
    # worker acts only on the message carrying the current token.
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One try of a delivery: when, what came back, how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # succeeded, retry (another attempt is scheduled) or dead.
    outcome: Mapped[str] = mapped_column(String(20))
