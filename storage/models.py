"""Tables: classification jobs and API keys."""

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

from storage.db import Base

QUEUES = ("emergency", "standard")
STATUSES = ("queued", "running", "succeeded", "failed")
ROLES = ("admin", "operator", "viewer", "api_user")


def utcnow():
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


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
