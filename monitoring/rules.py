"""The alert rules: thresholds over security events, and the detector.

Each rule returns findings; a finding names its type, its subject
("address:<ip>", "key:<prefix>" or "all") and the facts behind it.
"""

from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select

from monitoring import detector as detector_lib
from storage.models import SecurityEvent
from storage.monitoring import RequestLog

_MINUTE_SECONDS = 60
_HOUR_SECONDS = 3600


@dataclass
class Finding:
    """A condition that crossed its threshold."""

    type: str
    subject: str
    message: str
    window_seconds: int
    key_prefix: str | None = None
    client_address: str | None = None
    details: dict = field(default_factory=dict)


def _subject(key_prefix, client_address):
    if key_prefix:
        return f"key:{key_prefix}", key_prefix, None
    return f"address:{client_address}", None, client_address


def failed_auth_rate(session, *, now, threshold):
    """Failed authentications over ``threshold`` in the last minute.

    Counted per client address (that address is then worth blocking);
    when no address alone crosses it but all of them together do, one
    finding with subject "all" says so.
    """
    since = now - timedelta(seconds=_MINUTE_SECONDS)
    counts = dict(
        session.execute(
            select(SecurityEvent.client_address, func.count())
            .where(SecurityEvent.kind == "auth_failed")
            .where(SecurityEvent.created_at >= since, SecurityEvent.created_at <= now)
            .group_by(SecurityEvent.client_address)
        ).all()
    )
    findings = [
        Finding(
            type="failed_auth_rate",
            subject=f"address:{address}",
            message=f"{count} failed authentications in a minute from {address}",
            window_seconds=_MINUTE_SECONDS,
            client_address=address,
            details={"count": count, "threshold": threshold},
        )
        for address, count in sorted(counts.items(), key=str)
        if address and count > threshold
    ]
    total = sum(counts.values())
    if not findings and total > threshold:
        findings.append(
            Finding(
                type="failed_auth_rate",
                subject="all",
                message=f"{total} failed authentications in a minute",
                window_seconds=_MINUTE_SECONDS,
                details={
                    "count": total,
                    "threshold": threshold,
                    "addresses": len(counts),
                },
            )
        )
    return findings


def _per_subject_hourly(session, *, kind, now, threshold, alert_type, what):
    since = now - timedelta(seconds=_HOUR_SECONDS)
    rows = session.execute(
        select(SecurityEvent.key_prefix, SecurityEvent.client_address, func.count())
        .where(SecurityEvent.kind == kind)
        .where(SecurityEvent.created_at >= since, SecurityEvent.created_at <= now)
        .group_by(SecurityEvent.key_prefix, SecurityEvent.client_address)
    ).all()
    counts = Counter()
    for key_prefix, address, count in rows:
        counts[_subject(key_prefix, address)] += count
    return [
        Finding(
            type=alert_type,
            subject=subject,
            message=f"{count} {what} in an hour for {subject}",
            window_seconds=_HOUR_SECONDS,
            key_prefix=key_prefix,
            client_address=address,
            details={"count": count, "threshold": threshold},
        )
        for (subject, key_prefix, address), count in sorted(counts.items())
        if count > threshold
    ]


def rate_limit_violations(session, *, now, threshold):
    """Rate-limit violations over ``threshold`` in the last hour, per key."""
    return _per_subject_hourly(
        session,
        kind="rate_limited",
        now=now,
        threshold=threshold,
        alert_type="rate_limit_violations",
        what="rate-limit violations",
    )


def suspicious_input_rate(session, *, now, threshold):
    """Suspicious inputs over ``threshold`` in the last hour, per key."""
    return _per_subject_hourly(
        session,
        kind="suspicious_input",
        now=now,
        threshold=threshold,
        alert_type="suspicious_input_rate",
        what="suspicious inputs",
    )


def anomalous_requests(
    session, *, now, detector, threshold, min_requests, window_seconds
):
    """Keys or addresses with ``min_requests`` recent submits scored above it."""
    if detector is None:
        return []

    window_start = now - timedelta(seconds=window_seconds)
    # TODO: this reads every request of the last 65 minutes to count each
    # key's rate in Python; fine at the tens of thousands an hour this
    # service sees, but past a few hundred thousand an hour the rates
    # should be counted in SQL (a window function) and only the window's
    # submits loaded.
    rows = session.scalars(
        select(RequestLog).where(
            RequestLog.created_at >= window_start - timedelta(seconds=_HOUR_SECONDS),
            RequestLog.created_at <= now,
        )
    ).all()
    recent = [row for row in rows if detector_lib._utc(row.created_at) >= window_start]
    matrix, scored = detector_lib.features(rows, scored=recent)
    scores = detector.score(matrix)
    flagged, top = Counter(), {}
    for row, score in zip(scored, scores, strict=True):
        if score > threshold:
            key = _subject(row.key_prefix, row.client_address)
            flagged[key] += 1
            top[key] = max(top.get(key, 0.0), float(score))
    return [
        Finding(
            type="anomalous_requests",
            subject=subject,
            message=(
                f"{count} unusual requests in {window_seconds}s for {subject} "
                f"(top score {top[(subject, key_prefix, address)]:.2f})"
            ),
            window_seconds=window_seconds,
            key_prefix=key_prefix,
            client_address=address,
            details={
                "flagged": count,
                "scored": len(scored),
                "top_score": round(top[(subject, key_prefix, address)], 4),
                "threshold": threshold,
            },
        )
        for (subject, key_prefix, address), count in sorted(flagged.items())
        if count >= min_requests
    ]


def evaluate(session, *, now, settings, detector):
    """Run every rule with the thresholds in ``settings``; return the findings."""
    return [
        *failed_auth_rate(
            session, now=now, threshold=settings["ALERT_FAILED_AUTH_PER_MINUTE"]
        ),
        *rate_limit_violations(
            session, now=now, threshold=settings["ALERT_RATE_LIMITED_PER_HOUR"]
        ),
        *suspicious_input_rate(
            session, now=now, threshold=settings["ALERT_SUSPICIOUS_INPUT_PER_HOUR"]
        ),
        *anomalous_requests(
            session,
            now=now,
            detector=detector,
            threshold=settings["ALERT_ANOMALY_SCORE"],
            min_requests=settings["ALERT_ANOMALY_MIN_REQUESTS"],
            window_seconds=settings["ANOMALY_WINDOW_SECONDS"],
        ),
    ]
