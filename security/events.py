"""Security events: one JSON log line and one database row each."""

import json
import logging

from storage.models import SecurityEvent

logger = logging.getLogger("aicrisisalert.security")


def record(
    session,
    kind,
    *,
    key_prefix=None,
    client_address=None,
    endpoint=None,
    severity="warning",
    details=None,
    commit=True,
):
    """Write a security event as a structured log line and a row.

    Never pass a key's secret part, a webhook secret or a message's text in
    ``details``: events are read by operators and kept for years.
    """
    event = SecurityEvent(
        kind=kind,
        severity=severity,
        key_prefix=key_prefix,
        client_address=client_address,
        endpoint=endpoint,
        details=details or {},
    )
    session.add(event)
    if commit:
        session.commit()
    logger.warning(
        "security: %s",
        json.dumps(
            {
                "event": kind,
                "severity": severity,
                "key_prefix": key_prefix,
                "client_address": client_address,
                "endpoint": endpoint,
                "details": details or {},
            },
            sort_keys=True,
        ),
    )
    return event
