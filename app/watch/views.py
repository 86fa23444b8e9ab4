"""Admin endpoints of the watch (alerts, actions, evidence) and /metrics."""

import re

import redis
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import request
from sqlalchemy import func
from sqlalchemy import select

from app.errors import ApiError
from app.errors import NotFound
from app.errors import ServiceUnavailable
from app.errors import Unprocessable
from monitoring import alerts
from monitoring import metrics
from monitoring import response
from monitoring import state
from security import events
from security.bans import StoreUnavailable
from storage.db import session
from storage.models import Job
from storage.monitoring import Evidence
from storage.monitoring import ResponseAction

bp = Blueprint("watch", __name__)

_MAX_LIMIT = 500
_DEFAULT_LIMIT = 50
# Queues whose depth /metrics reports (the broker's list per queue).
_QUEUES = ("emergency", "standard", "maintenance")
# A ban names an address or a key prefix (app/limits.py).
_BAN_IDENTITY_RE = re.compile(r"^(addr:[0-9A-Fa-f:.]{2,45}|key:[a-z0-9]{8,16})$")


class Conflict(ApiError):
    """The action cannot be done in the resource's current state."""

    status = 409
    code = "conflict"


# The largest row id a database column holds (a signed 64-bit integer): a
# larger one in a path is a 404 from the router, not an overflow below.
_MAX_ID = 2**63 - 1


def _limit():
    raw = request.args.get("limit", str(_DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_LIMIT:
        raise Unprocessable(
            f"limit must be a whole number from 1 to {_MAX_LIMIT}",
            fields={"limit": [f"between 1 and {_MAX_LIMIT}"]},
        )
    return int(raw)


@bp.get("/v1/alerts")
def list_alerts():
    """Return the latest alerts, newest first (``?limit=``, ``?type=``)."""
    rows = alerts.list_(
        session, limit=_limit(), alert_type=request.args.get("type") or None
    )
    return {"items": [alerts.to_dict(row) for row in rows]}


@bp.get(f"/v1/alerts/<int(max={_MAX_ID}):alert_id>")
def get_alert(alert_id):
    """Return one alert with the actions taken on it."""
    row = alerts.get(session, alert_id=alert_id)
    if row is None:
        raise NotFound("no such alert")
    body = alerts.to_dict(row)
    body["actions"] = [
        response.action_dict(action)
        for action in response.list_actions(session, limit=_MAX_LIMIT, alert_id=row.id)
    ]
    return body


@bp.get("/v1/actions")
def list_actions():
    """Return the latest automatic and admin actions, newest first."""
    rows = response.list_actions(session, limit=_limit())
    return {"items": [response.action_dict(row) for row in rows]}


@bp.post(f"/v1/actions/<int(max={_MAX_ID}):action_id>/reverse")
def reverse_action(action_id):
    """Undo an action (lift a block, restore a key, end detailed logging).

    Answers 404 for an unknown action and 409 for one reversed before or
    one that changed nothing (evidence).
    """
    row = session.get(ResponseAction, action_id)
    if row is None:
        raise NotFound("no such action")
    try:
        response.reverse(
            session,
            state.client_for(current_app.config),
            row,
            by=f"key:{g.api_key.prefix}",
        )
    except response.ResponseError as error:
        raise Conflict(str(error)) from None
    return response.action_dict(row)


@bp.delete("/v1/bans/<identity>")
def lift_ban(identity):
    """Lift the rate-limit ban of ``addr:<address>`` or ``key:<prefix>``.

    Idempotent: ``lifted`` says whether a ban was in force (always false
    while rate limiting is off). Answers 422 for a malformed identity and
    503 when the ban store is unreachable.
    """
    if not _BAN_IDENTITY_RE.match(identity):
        raise Unprocessable(
            "name the ban as addr:<address> or key:<prefix>",
            fields={"identity": ["expected addr:<address> or key:<prefix>"]},
        )
    store = current_app.extensions.get("ban_store")
    try:
        lifted = store.lift(identity) if store is not None else False
    except StoreUnavailable:
        raise ServiceUnavailable(
            "the ban store is unavailable; try again shortly",
            headers={"Retry-After": "5"},
        ) from None
    if not lifted:
        return {"identity": identity, "lifted": False}

    events.record(
        session,
        "ban_lifted",
        key_prefix=g.api_key.prefix,
        client_address=request.remote_addr,
        endpoint=request.endpoint,
        details={"identity": identity, "by": f"key:{g.api_key.prefix}"},
    )
    return {"identity": identity, "lifted": True}


@bp.get(f"/v1/evidence/<int(max={_MAX_ID}):evidence_id>")
def get_evidence(evidence_id):
    """Return an evidence record: the alert, its window, requests and events."""
    row = session.get(Evidence, evidence_id)
    if row is None:
        raise NotFound("no such evidence")
    return response.evidence_dict(row)


@bp.get("/metrics")
def metrics_page():
    """Return the metrics in the Prometheus text format."""
    counts = dict(
        session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    )
    try:
        body = metrics.render(
            state.client_for(current_app.config), queues=_QUEUES, jobs_by_status=counts
        )
    except redis.RedisError:
        raise ServiceUnavailable(
            "metrics are unavailable: Redis does not answer",
            headers={"Retry-After": "5"},
        ) from None
    return Response(body, mimetype=None, content_type=metrics.CONTENT_TYPE)
