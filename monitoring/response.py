"""Automatic response to alerts, each action recorded and reversible.

Actions: ``revoke_key`` (the key is refused from the next request on),
``block_address`` (the API answers 403 to the address until the block
lapses), ``detailed_logging`` (every request is logged in detail for a
while) and ``collect_evidence`` (the alert, its time window, and the
recent requests and security events of its key or address, kept as one
record). Each action writes a ``response_actions`` row and a security
event; an admin reverses one by id (``flask watch reverse`` or
``POST /v1/actions/<id>/reverse``), which is recorded the same way.
"""

import logging
from datetime import timedelta

from sqlalchemy import or_
from sqlalchemy import select

from monitoring import alerts as alerts_lib
from monitoring import state
from security import events
from storage.jobs import as_utc
from storage.models import ApiKey
from storage.models import SecurityEvent
from storage.models import utcnow
from storage.monitoring import Evidence
from storage.monitoring import RequestLog
from storage.monitoring import ResponseAction

logger = logging.getLogger(__name__)

ACTIONS = ("revoke_key", "block_address", "detailed_logging", "collect_evidence")
# Evidence reaches back at least this far, whatever the rule's window.
_EVIDENCE_MIN_WINDOW_SECONDS = 3600


class ResponseError(Exception):
    """An action cannot be reversed."""


class NotReversible(ResponseError):
    """The action changed nothing that could be undone."""


class AlreadyReversed(ResponseError):
    """The action was reversed before."""


def respond(session, client, alert, finding, *, settings, now):
    """Run the actions configured for the alert's type; return those taken."""
    taken = []
    for name in settings["RESPONSE_ACTIONS"].get(alert.type, []):
        if name not in ACTIONS:
            logger.warning("response: unknown action=%s type=%s", name, alert.type)
            continue
        action = _RUNNERS[name](session, client, alert, finding, settings, now)
        if action is not None:
            taken.append(action)
    return taken


def _record(session, alert, action, target, *, now, expires_at=None, details=None):
    row = ResponseAction(
        created_at=now,
        alert_id=alert.id,
        action=action,
        target=target,
        expires_at=expires_at,
        details=details or {},
    )
    session.add(row)
    session.flush()
    return row


def _event(session, kind, row, *, key_prefix=None, address=None, by=None):
    events.record(
        session,
        kind,
        key_prefix=key_prefix,
        client_address=address,
        severity="high" if by is None else "warning",
        details={
            "action_id": row.id,
            "alert_id": row.alert_id,
            "automatic": by is None,
            "by": by,
        },
    )


def _revoke_key(session, client, alert, finding, settings, now):
    key = _key(session, finding.key_prefix)
    if key is None or key.revoked_at is not None:
        return None

    key.revoked_at = now
    row = _record(session, alert, "revoke_key", key.prefix, now=now)
    _event(session, "key_revoked", row, key_prefix=key.prefix)
    logger.warning("response: revoked key prefix=%s alert=%d", key.prefix, alert.id)
    return row


def _key(session, prefix):
    if not prefix:
        return None
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()


def _block_address(session, client, alert, finding, settings, now):
    address = finding.client_address
    if not address:
        return None

    seconds = int(settings["RESPONSE_BLOCK_SECONDS"])
    row = _record(
        session,
        alert,
        "block_address",
        address,
        now=now,
        expires_at=now + timedelta(seconds=seconds),
    )
    state.block(client, address, seconds=seconds, reason=alert.type, action_id=row.id)
    _event(session, "address_blocked", row, address=address)
    logger.warning(
        "response: blocked address=%s seconds=%d alert=%d", address, seconds, alert.id
    )
    return row


def _detailed_logging(session, client, alert, finding, settings, now):
    seconds = int(settings["RESPONSE_DETAILED_LOGGING_SECONDS"])
    row = _record(
        session,
        alert,
        "detailed_logging",
        None,
        now=now,
        expires_at=now + timedelta(seconds=seconds),
    )
    state.enable_detailed_logging(client, seconds=seconds, action_id=row.id)
    _event(session, "detailed_logging_on", row)
    logger.warning("response: detailed logging seconds=%d alert=%d", seconds, alert.id)
    return row


def _collect_evidence(session, client, alert, finding, settings, now):
    window = max(finding.window_seconds, _EVIDENCE_MIN_WINDOW_SECONDS)
    start = now - timedelta(seconds=window)
    limit = int(settings["EVIDENCE_MAX_ROWS"])
    evidence = Evidence(
        created_at=now,
        alert_id=alert.id,
        window_start=start,
        window_end=now,
        key_prefix=finding.key_prefix,
        client_address=finding.client_address,
        alert=alerts_lib.to_dict(alert),
        requests=[
            _request_dict(row)
            for row in _matching(session, RequestLog, finding, start, limit)
        ],
        security_events=[
            _event_dict(row)
            for row in _matching(session, SecurityEvent, finding, start, limit)
        ],
    )
    session.add(evidence)
    session.flush()
    row = _record(
        session,
        alert,
        "collect_evidence",
        finding.key_prefix or finding.client_address,
        now=now,
        details={"evidence_id": evidence.id},
    )
    _event(
        session,
        "evidence_collected",
        row,
        key_prefix=finding.key_prefix,
        address=finding.client_address,
    )
    return row


def _matching(session, model, finding, start, limit):
    """Rows of ``model`` since ``start`` for the finding's key or address."""
    query = select(model).where(model.created_at >= start)
    conditions = []
    if finding.key_prefix:
        conditions.append(model.key_prefix == finding.key_prefix)
    if finding.client_address:
        conditions.append(model.client_address == finding.client_address)
    if conditions:
        query = query.where(or_(*conditions))
    return session.scalars(query.order_by(model.id.desc()).limit(limit)).all()


def _request_dict(row):
    return {
        "at": as_utc(row.created_at).isoformat(),
        "request_id": row.request_id,
        "key_prefix": row.key_prefix,
        "client_address": row.client_address,
        "method": row.method,
        "endpoint": row.endpoint,
        "status": row.status,
        "duration_ms": round(row.duration_ms, 2),
        "text_length": row.text_length,
        "user_agent_length": row.user_agent_length,
    }


def _event_dict(row):
    return {
        "at": as_utc(row.created_at).isoformat(),
        "kind": row.kind,
        "severity": row.severity,
        "key_prefix": row.key_prefix,
        "client_address": row.client_address,
        "endpoint": row.endpoint,
        "details": row.details or {},
    }


_RUNNERS = {
    "revoke_key": _revoke_key,
    "block_address": _block_address,
    "detailed_logging": _detailed_logging,
    "collect_evidence": _collect_evidence,
}


def reverse(session, client, action, *, by):
    """Undo ``action`` now, on behalf of ``by``; return it.

    Raises:
        AlreadyReversed: it was reversed before.
        NotReversible: it is an evidence record, which changed nothing.
    """
    if action.reversed_at is not None:
        raise AlreadyReversed(f"action {action.id} was reversed already")
    if action.action == "collect_evidence":
        raise NotReversible("collecting evidence changed nothing to reverse")

    if action.action == "revoke_key":
        key = _key(session, action.target)
        if key is not None:
            key.revoked_at = None
        kind, event_args = "key_restored", {"key_prefix": action.target}
    elif action.action == "block_address":
        state.unblock(client, action.target)
        kind, event_args = "address_unblocked", {"address": action.target}
    else:
        state.disable_detailed_logging(client)
        kind, event_args = "detailed_logging_off", {}
    action.reversed_at = utcnow()
    action.reversed_by = by
    _event(session, kind, action, by=by, **event_args)
    logger.warning(
        "response: reversed action=%d kind=%s by=%s", action.id, action.action, by
    )
    return action


def list_actions(session, *, limit, alert_id=None):
    """Return the latest actions, newest first."""
    query = select(ResponseAction).order_by(ResponseAction.id.desc()).limit(limit)
    if alert_id is not None:
        query = query.where(ResponseAction.alert_id == alert_id)
    return session.scalars(query).all()


def action_dict(row):
    """Return an action as plain JSON values."""
    return {
        "id": row.id,
        "alert_id": row.alert_id,
        "action": row.action,
        "target": row.target,
        "created_at": as_utc(row.created_at).isoformat(),
        "expires_at": _iso(row.expires_at),
        "reversed_at": _iso(row.reversed_at),
        "reversed_by": row.reversed_by,
        "details": row.details or {},
    }


def evidence_dict(row):
    """Return an evidence record as plain JSON values."""
    return {
        "id": row.id,
        "alert_id": row.alert_id,
        "window_start": _iso(row.window_start),
        "window_end": _iso(row.window_end),
        "key_prefix": row.key_prefix,
        "client_address": row.client_address,
        "alert": row.alert,
        "requests": row.requests,
        "security_events": row.security_events,
    }


def _iso(moment):
    return as_utc(moment).isoformat() if moment is not None else None
