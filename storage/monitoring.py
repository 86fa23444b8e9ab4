"""Tables of the watch: request logs, inference batches, alerts and responses."""

from datetime import datetime

from sqlalchemy import JSON
from sqlalchemy import DateTime
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from storage.db import Base
from storage.models import utcnow


class RequestLog(Base):
    """One API request: who, where, how it went. Never the message's text."""

    __tablename__ = "request_logs"
    __table_args__ = (
        Index("ix_request_logs_created", "created_at"),
        Index("ix_request_logs_key_created", "key_prefix", "created_at"),
        Index("ix_request_logs_address_created", "client_address", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    request_id: Mapped[str | None] = mapped_column(String(64))
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    client_address: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    endpoint: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    # Characters of the submitted text (submits only), not the text.
    text_length: Mapped[int | None] = mapped_column(Integer)
    user_agent_length: Mapped[int] = mapped_column(Integer, default=0)


class InferenceBatch(Base):
    """One forward pass of a worker: the metrics history kept for 30 days."""

    __tablename__ = "inference_batches"
    __table_args__ = (Index("ix_inference_batches_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    queue: Mapped[str] = mapped_column(String(20))
    batch_size: Mapped[int] = mapped_column(Integer)
    inference_ms: Mapped[float] = mapped_column(Float)


class Alert(Base):
    """A finding of the anomaly checks, open while its condition lasts."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_dedup_last_seen", "dedup_key", "last_seen_at"),
        Index("ix_alerts_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    # failed_auth_rate, rate_limit_violations, suspicious_input_rate,
    # anomalous_requests
    type: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    # What the alert is about: "address:<ip>", "key:<prefix>" or "all".
    subject: Mapped[str] = mapped_column(String(100))
    # type and subject: the same condition keeps one alert while it lasts.
    dedup_key: Mapped[str] = mapped_column(String(160))
    message: Mapped[str] = mapped_column(String(300))
    # How many checks found the condition while this alert was open.
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    details: Mapped[dict | None] = mapped_column(JSON)


class ResponseAction(Base):
    """An automatic (or admin) response to an alert, and its reversal."""

    __tablename__ = "response_actions"
    __table_args__ = (Index("ix_response_actions_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    # revoke_key, block_address, detailed_logging, collect_evidence
    action: Mapped[str] = mapped_column(String(30))
    # The key prefix or the address acted on; None for global actions.
    target: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reversed_by: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict | None] = mapped_column(JSON)


class Evidence(Base):
    """What was seen around an alert: its requests and security events."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    client_address: Mapped[str | None] = mapped_column(String(64))
    alert: Mapped[dict] = mapped_column(JSON)
    requests: Mapped[list] = mapped_column(JSON)
    security_events: Mapped[list] = mapped_column(JSON)


class RetentionRun(Base):
    """One retention run: when, and how many rows it removed per table."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "running", "finished" or "failed"; a run cut off stays "running".
    status: Mapped[str] = mapped_column(String(10), default="running")
    removed: Mapped[dict | None] = mapped_column(JSON)
