"""Raising alerts, with de-duplication, and reading them back."""

import json
import logging
from datetime import timedelta

from sqlalchemy import select

from storage.jobs import as_utc
from storage.monitoring import Alert

logger = logging.getLogger("aicrisisalert.alerts")

SEVERITIES = {
    "failed_auth_rate": "high",
    "rate_limit_violations": "medium",
    "suspicious_input_rate": "high",
    "anomalous_requests": "medium",
}


def raise_alert(session, finding, *, now, quiet_seconds):
    """Open an alert for ``finding``, or extend the one already open.

    An alert stays open while its condition (type and subject) is found
    again within ``quiet_seconds`` of the last time; then the existing row
    is updated and no new alert is raised.

    Returns:
        ``(alert, is_new)``.
    """
    dedup_key = f"{finding.type}|{finding.subject}"
    since = now - timedelta(seconds=quiet_seconds)
    open_alert = session.scalars(
        select(Alert)
        .where(Alert.dedup_key == dedup_key, Alert.last_seen_at >= since)
        .order_by(Alert.id.desc())
        .limit(1)
    ).first()
    if open_alert is not None:
        open_alert.last_seen_at = now
        open_alert.occurrences += 1
        open_alert.details = finding.details
        session.commit()
        logger.info(
            "alert: still open id=%d type=%s subject=%s occurrences=%d",
            open_alert.id,
            open_alert.type,
            open_alert.subject,
            open_alert.occurrences,
        )
        return open_alert, False

    alert = Alert(
        created_at=now,
        last_seen_at=now,
        type=finding.type,
        severity=SEVERITIES.get(finding.type, "medium"),
        subject=finding.subject,
        dedup_key=dedup_key,
        message=finding.message[:300],
        occurrences=1,
        details=finding.details,
    )
    session.add(alert)
    session.commit()
    logger.warning("alert: %s", json.dumps(to_dict(alert), sort_keys=True))
    return alert, True


def list_(session, *, limit, alert_type=None):
    """Return the latest alerts, newest first."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if alert_type:
        query = query.where(Alert.type == alert_type)
    return session.scalars(query).all()


def get(session, *, alert_id):
    """Return the alert with ``alert_id``, or None."""
    return session.get(Alert, alert_id)


def to_dict(alert):
    """Return the alert as plain JSON values."""
    return {
        "id": alert.id,
        "type": alert.type,
        "severity": alert.severity,
        "subject": alert.subject,
        "message": alert.message,
        "created_at": as_utc(alert.created_at).isoformat(),
        "last_seen_at": as_utc(alert.last_seen_at).isoformat(),
        "occurrences": alert.occurrences,
        "details": alert.details or {},
    }
