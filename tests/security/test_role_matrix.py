"""Every endpoint x every role, no key and a revoked key: 2xx, 401 or 403.

The routes come from the app's url_map, so an endpoint added later is in
the matrix at once; it fails until it has a sample request below.
"""

import pytest
from sqlalchemy import select

from app.auth import ANY_KEY
from app.auth import ENDPOINT_PERMISSIONS
from app.auth import PUBLIC
from app.jobs import service as job_service
from app.keys import service as key_service
from app.webhooks import service as webhook_service
from security import roles
from storage.db import session
from storage.models import SecurityEvent
from storage.models import WebhookDelivery
from storage.models import WebhookEvent
from storage.models import utcnow
from storage.monitoring import Alert
from storage.monitoring import Evidence
from storage.monitoring import ResponseAction

TWEET = "Bridge on route 9 collapsed, cars in the river, send rescue boats"
CALLERS = (*roles.ROLES, "no key", "revoked key")


class Fixtures:
    """Keys of every role, one job per key, and fresh keys to rotate or revoke."""

    def __init__(self, app, make_key):
        self.app = app
        self.keys = {role: make_key(role, name=role) for role in roles.ROLES}
        revoked = make_key("admin", name="revoked")
        key_service.revoke(
            session, row=key_service.get_by_prefix(session, prefix=_prefix(revoked))
        )
        self.keys["revoked key"] = revoked
        self.jobs = {}
        for role, key in self.keys.items():
            row = key_service.get_by_prefix(session, prefix=_prefix(key))
            (job,) = job_service.create(
                session, items=[{"text": TWEET}], queue="standard", api_key_id=row.id
            )
            self.jobs[role] = job.id

    def key_id(self, caller):
        """The id of the caller's key (the admin's for callers without one)."""
        key = self.keys.get(caller, self.keys["admin"])
        return key_service.get_by_prefix(session, prefix=_prefix(key)).id

    def endpoint(self, caller):
        """A fresh webhook endpoint of the caller's key; returns its id."""
        row = webhook_service.create(
            session,
            api_key_id=self.key_id(caller),
            url="https://8.8.8.8/hook",
            event_types=["classification.succeeded"],
            description=None,
            enabled=True,
        )
        return row.id

    def dead_delivery(self, caller):
        """A dead-lettered delivery of the caller's key; returns its id.

        Written straight to the tables: no delivery is attempted here.
        """
        endpoint_id = self.endpoint(caller)
        event = WebhookEvent(
            type="classification.succeeded",
            job_id=_job_of(self, caller),
            created_at=utcnow(),
            payload="{}",
        )
        session.add(event)
        session.flush()
        delivery = WebhookDelivery(
            event_id=event.id,
            api_key_id=self.key_id(caller),
            endpoint_id=endpoint_id,
            status="dead",
            attempt_count=1,
            created_at=utcnow(),
            finished_at=utcnow(),
        )
        session.add(delivery)
        session.commit()
        return delivery.id

    def alert(self):
        """A fresh alert row; returns its id."""
        now = utcnow()
        row = Alert(
            created_at=now,
            last_seen_at=now,
            type="failed_auth_rate",
            severity="high",
            subject="address:127.0.0.9",
            dedup_key=f"failed_auth_rate:{now.timestamp()}",
            message="matrix",
            details={},
        )
        session.add(row)
        session.commit()
        return row.id

    def action(self):
        """A fresh, reversible detailed-logging action; returns its id."""
        row = ResponseAction(
            created_at=utcnow(),
            alert_id=self.alert(),
            action="detailed_logging",
            expires_at=utcnow(),
            details={},
        )
        session.add(row)
        session.commit()
        return row.id

    def evidence(self):
        """A fresh evidence record; returns its id."""
        now = utcnow()
        row = Evidence(
            created_at=now,
            alert_id=self.alert(),
            window_start=now,
            window_end=now,
            alert={},
            requests=[],
            security_events=[],
        )
        session.add(row)
        session.commit()
        return row.id

    def ban(self):
        """An address identity to unban (limits are off here: none is banned)."""
        self.bans = getattr(self, "bans", 0) + 1
        return f"addr:192.0.2.{self.bans}"

    def target_prefix(self):
        """A new key for this one call to rotate or revoke."""
        row, _key = key_service.create(
            session, name="target", role="viewer", pepper=self.app.config["KEY_PEPPER"]
        )
        return row.prefix


def _prefix(key):
    return key.split("_")[1]


def _job_of(fx, caller):
    return fx.jobs.get(caller, fx.jobs["admin"])


# How to call each endpoint so that a caller allowed to use it gets a 2xx:
# (path arguments, request keyword arguments).
SAMPLES = {
    "health.health": lambda fx, caller: ({}, {}),
    "health.ready": lambda fx, caller: ({}, {}),
    "docs.openapi": lambda fx, caller: ({}, {}),
    "jobs.submit": lambda fx, caller: ({}, {"json": {"text": TWEET}}),
    "jobs.submit_emergency": lambda fx, caller: ({}, {"json": {"text": TWEET}}),
    "jobs.submit_batch": lambda fx, caller: (
        {},
        {"json": {"items": [{"text": TWEET}, {"text": TWEET}]}},
    ),
    "jobs.get": lambda fx, caller: ({"job_id": _job_of(fx, caller)}, {}),
    "jobs.list_": lambda fx, caller: (
        {},
        {"query_string": {"ids": _job_of(fx, caller)}},
    ),
    "keys.create": lambda fx, caller: (
        {},
        {"json": {"name": "new", "role": "api_user"}},
    ),
    "keys.list_": lambda fx, caller: ({}, {}),
    "model.get": lambda fx, caller: ({}, {}),
    "keys.get": lambda fx, caller: ({"prefix": fx.target_prefix()}, {}),
    "keys.rotate": lambda fx, caller: (
        {"prefix": fx.target_prefix()},
        {"json": {"grace_seconds": 60}},
    ),
    "keys.revoke": lambda fx, caller: ({"prefix": fx.target_prefix()}, {}),
    "watch.list_alerts": lambda fx, caller: ({}, {}),
    "watch.get_alert": lambda fx, caller: ({"alert_id": fx.alert()}, {}),
    "watch.list_actions": lambda fx, caller: ({}, {}),
    "watch.reverse_action": lambda fx, caller: (
        {"action_id": fx.action()},
        {"json": {}},
    ),
    "watch.get_evidence": lambda fx, caller: ({"evidence_id": fx.evidence()}, {}),
    "watch.metrics_page": lambda fx, caller: ({}, {}),
    "watch.lift_ban": lambda fx, caller: ({"identity": fx.ban()}, {}),
    "webhooks.create": lambda fx, caller: (
        {},
        {"json": {"url": "https://8.8.8.8/hook"}},
    ),
    "webhooks.list_": lambda fx, caller: ({}, {}),
    "webhooks.get": lambda fx, caller: ({"endpoint_id": fx.endpoint(caller)}, {}),
    "webhooks.update": lambda fx, caller: (
        {"endpoint_id": fx.endpoint(caller)},
        {"json": {"enabled": False}},
    ),
    "webhooks.delete": lambda fx, caller: ({"endpoint_id": fx.endpoint(caller)}, {}),
    "webhooks.rotate_secret": lambda fx, caller: (
        {"endpoint_id": fx.endpoint(caller)},
        {"json": {}},
    ),
    "webhooks.list_deliveries": lambda fx, caller: (
        {"endpoint_id": fx.endpoint(caller)},
        {},
    ),
    "webhooks.list_all_deliveries": lambda fx, caller: ({}, {}),
    "webhooks.get_delivery": lambda fx, caller: (
        {"delivery_id": fx.dead_delivery(caller)},
        {},
    ),
    "webhooks.redeliver": lambda fx, caller: (
        {"delivery_id": fx.dead_delivery(caller)},
        {},
    ),
}


def _routes(app):
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((rule, method))
    return routes


def _expected(endpoint, caller):
    permission = ENDPOINT_PERMISSIONS[endpoint]
    if permission is PUBLIC:
        return "2xx"
    if caller in ("no key", "revoked key"):
        return 401
    if permission == ANY_KEY:
        return "2xx"
    return "2xx" if roles.allows(caller, permission) else 403


def test_role_matrix_covers_every_route_with_the_right_status(app, client, make_key):
    """Each route answers 2xx, 401 or 403 exactly as its permission says."""
    fx = Fixtures(app, make_key)
    results = {}
    routes = _routes(app)
    missing = sorted({rule.endpoint for rule, _m in routes} - set(SAMPLES))
    assert not missing, f"add a sample request for {missing}"

    for rule, method in routes:
        for caller in CALLERS:
            with app.test_request_context():
                url_args, kwargs = SAMPLES[rule.endpoint](fx, caller)
                path = app.url_for(rule.endpoint, **url_args)
            headers = {}
            if caller != "no key":
                headers["Authorization"] = f"Bearer {fx.keys[caller]}"
            response = client.open(path, method=method, headers=headers, **kwargs)
            expected = _expected(rule.endpoint, caller)
            got = "2xx" if 200 <= response.status_code < 300 else response.status_code
            results[(rule.endpoint, method, caller)] = (expected, got)

    wrong = {cell: pair for cell, pair in results.items() if pair[0] != pair[1]}
    assert not wrong, wrong
    # 11 routes x 6 callers at the time of writing; more only add cells.
    assert len(results) >= 11 * len(CALLERS)
    forbidden = session.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == "forbidden")
    ).all()
    assert len(forbidden) == sum(1 for e, g in results.values() if g == 403)
    assert all(event.key_prefix and event.endpoint for event in forbidden)


@pytest.mark.parametrize(
    ("role", "sees_others"),
    [("admin", True), ("viewer", True), ("operator", False)],
)
def test_job_reads_are_scoped_to_the_key_unless_the_role_sees_all(
    client, make_key, role, sees_others
):
    """Admins and viewers read every job; an operator only its own (404 else)."""
    submitter = make_key("operator", name="submitter")
    other_job = client.post(
        "/v1/classifications",
        json={"text": TWEET},
        headers={"Authorization": f"Bearer {submitter}"},
    ).get_json()["id"]
    reader = {"Authorization": f"Bearer {make_key(role, name='reader')}"}

    single = client.get(f"/v1/classifications/{other_job}", headers=reader)
    bulk = client.get(
        "/v1/classifications", query_string={"ids": other_job}, headers=reader
    )

    assert single.status_code == (200 if sees_others else 404)
    assert [item["id"] for item in bulk.get_json()["items"]] == (
        [other_job] if sees_others else []
    )


def test_role_table_grants_the_seed_permissions():
    """The four roles hold the design's permissions, plus who reads all jobs."""
    assert roles.ROLE_PERMISSIONS["api_user"] == {roles.CREATE_CLASSIFICATIONS}
    assert roles.ROLE_PERMISSIONS["operator"] == {
        roles.READ_CLASSIFICATIONS,
        roles.CREATE_CLASSIFICATIONS,
    }
    assert roles.allows("viewer", roles.VIEW_METRICS)
    assert not roles.allows("viewer", roles.CREATE_CLASSIFICATIONS)
    assert roles.allows("admin", roles.MANAGE_USERS)
    assert not roles.allows("root", roles.READ_CLASSIFICATIONS)
