"""One anomaly check and one re-fit: what the Beat tasks and the CLI run."""

import logging
from datetime import timedelta

from sqlalchemy import select

from monitoring import alerts
from monitoring import detector as detector_lib
from monitoring import metrics
from monitoring import response
from monitoring import rules
from storage.models import utcnow
from storage.monitoring import Alert
from storage.monitoring import RequestLog

logger = logging.getLogger(__name__)


def run_check(session, client, settings, *, notify, now=None):
    """Evaluate every rule; raise, respond to and announce new alerts.

    Args:
        session: the database session.
        client: the watch's Redis client.
        settings: the merged settings.
        notify: called with each new alert's dict (the webhook hook).
        now: the check's time (tests pass one; default the clock).

    Returns:
        A summary: findings, new alert ids, still-open alert ids, actions.
    """
    now = now or utcnow()
    detector = detector_lib.load(settings["ANOMALY_MODEL_PATH"])
    findings = rules.evaluate(session, now=now, settings=settings, detector=detector)
    summary = {"findings": len(findings), "new": [], "open": [], "actions": []}
    for finding in findings:
        alert, is_new = alerts.raise_alert(
            session, finding, now=now, quiet_seconds=settings["ALERT_QUIET_SECONDS"]
        )
        if not is_new:
            summary["open"].append(alert.id)
            continue

        summary["new"].append(alert.id)
        metrics.safely(metrics.increment, client, "alerts", {"type": alert.type})
        taken = response.respond(
            session, client, alert, finding, settings=settings, now=now
        )
        session.commit()
        summary["actions"].extend(f"{row.action}:{row.id}" for row in taken)
        notify(alerts.to_dict(alert))
    summary["detector"] = detector is not None
    return summary


def baseline(session, *, now, days, max_rows):
    """Return the request-log rows a re-fit learns from, oldest first.

    Only requests that succeeded, and none from a key or address that
    raised an alert in the baseline period: an attack must not become
    the new normal.
    """
    since = now - timedelta(days=days)
    rows = session.scalars(
        select(RequestLog)
        .where(RequestLog.created_at >= since, RequestLog.status < 400)
        .order_by(RequestLog.id.desc())
        .limit(max_rows)
    ).all()
    alerted = set(
        session.scalars(select(Alert.subject).where(Alert.last_seen_at >= since)).all()
    )
    return [
        row for row in reversed(rows) if detector_lib.subject_of(row) not in alerted
    ]


def run_refit(session, settings, *, now=None):
    """Fit a new detector on the baseline and save it; return a summary."""
    now = now or utcnow()
    rows = baseline(
        session,
        now=now,
        days=settings["ANOMALY_BASELINE_DAYS"],
        max_rows=settings["ANOMALY_BASELINE_MAX_ROWS"],
    )
    matrix, _scored = detector_lib.features(rows)
    if len(matrix) < settings["ANOMALY_BASELINE_MIN_ROWS"]:
        logger.info(
            "anomaly: refit skipped submits=%d minimum=%d",
            len(matrix),
            settings["ANOMALY_BASELINE_MIN_ROWS"],
        )
        return {"fitted": False, "submits": len(matrix)}

    fitted = detector_lib.Detector.fit(
        matrix, quantile=settings["ANOMALY_CALIBRATION_QUANTILE"], fitted_at=now
    )
    fitted.save(settings["ANOMALY_MODEL_PATH"])
    logger.info(
        "anomaly: refit done submits=%d path=%s",
        len(matrix),
        settings["ANOMALY_MODEL_PATH"],
    )
    return {"fitted": True, "submits": len(matrix)}
