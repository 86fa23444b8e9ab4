"""Automatic response: blocks, revocations, detailed logging, evidence, reversal."""

import logging

from sqlalchemy import func
from sqlalchemy import select

from security import events
from security import keys
from storage.db import session
from storage.monitoring import RequestLog
from storage.monitoring import ResponseAction
from tests.conftest import wait_for
from tests.monitoring.conftest import ATTACKER
from tests.monitoring.conftest import BYSTANDER
from tests.monitoring.conftest import fail_logins


def _get(client, headers, address):
    return client.get(
        "/v1/classifications?ids=x",
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def _actions(app, action):
    with app.app_context():
        return session.scalars(
            select(ResponseAction).where(ResponseAction.action == action)
        ).all()


def _request_logs(app):
    with app.app_context():
        return session.scalar(select(func.count()).select_from(RequestLog))


def test_block_takes_effect_on_next_request_and_lapses_on_time(
    app, client, watch, make_key
):
    """After the alert the address gets 403 at once; the block lapses by itself.

    Blocked requests are counted in the metrics but add no request-log rows.
    """
    app.config["RESPONSE_BLOCK_SECONDS"] = 2
    headers = make_key.headers("operator")
    assert _get(client, headers, ATTACKER).status_code == 200
    fail_logins(client, 11)

    watch.check()

    logged = _request_logs(app)
    blocked = _get(client, headers, ATTACKER)
    assert blocked.status_code == 403
    assert blocked.get_json()["error"]["code"] == "address_blocked"
    assert _request_logs(app) == logged
    assert _get(client, headers, BYSTANDER).status_code == 200
    (event,) = watch.events("address_blocked")
    assert event.client_address == ATTACKER
    assert event.details["automatic"] is True
    wait_for(
        lambda: _get(client, headers, ATTACKER).status_code == 200,
        timeout=5,
        interval=0.25,
        message="the block to lapse",
    )


def test_admin_lifts_a_block_through_the_api_once(app, client, watch, make_key):
    """POST /v1/actions/<id>/reverse lifts the block; a second try is 409."""
    admin = make_key.headers("admin")
    fail_logins(client, 11)
    watch.check()
    (block,) = _actions(app, "block_address")
    assert _get(client, admin, ATTACKER).status_code == 403

    response = client.post(f"/v1/actions/{block.id}/reverse", headers=admin)

    assert response.status_code == 200
    body = response.get_json()
    assert body["reversed_by"].startswith("key:")
    assert _get(client, admin, ATTACKER).status_code == 200
    (event,) = watch.events("address_unblocked")
    assert event.details == {
        "action_id": block.id,
        "alert_id": block.alert_id,
        "automatic": False,
        "by": body["reversed_by"],
    }
    again = client.post(f"/v1/actions/{block.id}/reverse", headers=admin)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"


def test_reversing_evidence_is_refused_and_unknown_actions_are_404(
    app, client, watch, make_key
):
    """Evidence changed nothing, so it cannot be reversed; no action is 404."""
    admin = make_key.headers("admin")
    fail_logins(client, 11)
    watch.check()
    (evidence,) = _actions(app, "collect_evidence")

    refused = client.post(f"/v1/actions/{evidence.id}/reverse", headers=admin)
    missing = client.post("/v1/actions/9999/reverse", headers=admin)

    assert refused.status_code == 409
    assert "nothing to reverse" in refused.get_json()["error"]["message"]
    assert missing.status_code == 404


def test_revoked_key_is_refused_at_once_and_cli_restores_it(
    app, client, runner, watch, make_key
):
    """A key revoked by the response gets 401 on its next request; CLI undoes it."""
    key = make_key("operator")
    headers = {"Authorization": f"Bearer {key}"}
    prefix = keys.parse_prefix(key)
    with app.app_context():
        for _ in range(21):
            events.record(session, "suspicious_input", key_prefix=prefix, commit=False)
        session.commit()
    assert _get(client, headers, BYSTANDER).status_code == 200

    watch.check()

    assert _get(client, headers, BYSTANDER).status_code == 401
    (revoke,) = _actions(app, "revoke_key")
    result = runner.invoke(args=["watch", "reverse", str(revoke.id), "--by", "ops"])
    assert result.exit_code == 0, result.output
    assert f"reversed action={revoke.id} revoke_key {prefix}" in result.output
    assert _get(client, headers, BYSTANDER).status_code == 200
    (restored,) = watch.events("key_restored")
    assert (restored.key_prefix, restored.details["by"]) == (prefix, "ops")
    (revoked,) = watch.events("key_revoked")
    assert revoked.details["action_id"] == revoke.id


def test_detailed_logging_logs_each_request_until_reversed(
    app, client, watch, make_key, caplog
):
    """Rate-limit abuse turns on per-request detail lines; reversing ends them."""
    headers = make_key.headers("operator")
    with app.app_context():
        for _ in range(6):
            events.record(session, "rate_limited", key_prefix="feedbeef", commit=False)
        session.commit()
    watch.check()
    caplog.set_level(logging.INFO, logger="app.watch.hooks")

    _get(client, headers, BYSTANDER)
    detail = [r.getMessage() for r in caplog.records if r.name == "app.watch.hooks"]
    assert len(detail) == 1
    assert "endpoint=jobs.list_ status=200" in detail[0]
    assert f"address={BYSTANDER}" in detail[0]

    (action,) = _actions(app, "detailed_logging")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["watch", "reverse", str(action.id)]).exit_code == 0
    caplog.clear()
    _get(client, headers, BYSTANDER)
    assert [r for r in caplog.records if r.name == "app.watch.hooks"] == []


def test_evidence_holds_the_requests_and_events_of_the_address(
    app, client, watch, make_key
):
    """The evidence record lists the attacker's requests and failures, not others'."""
    admin = make_key.headers("admin")
    _get(client, admin, BYSTANDER)
    fail_logins(client, 11)
    watch.check()
    (action,) = _actions(app, "collect_evidence")

    response = client.get(
        f"/v1/evidence/{action.details['evidence_id']}", headers=admin
    )

    body = response.get_json()
    assert response.status_code == 200
    assert body["client_address"] == ATTACKER
    assert body["alert"]["type"] == "failed_auth_rate"
    assert len(body["requests"]) == 11
    assert {r["status"] for r in body["requests"]} == {401}
    assert {r["client_address"] for r in body["requests"]} == {ATTACKER}
    kinds = [e["kind"] for e in body["security_events"]]
    assert kinds.count("auth_failed") == 11
    assert "address_blocked" in kinds


def test_alerts_endpoint_is_for_admins_only(app, client, watch, make_key):
    """GET /v1/alerts lists alerts for manage:users and refuses other roles."""
    fail_logins(client, 11)
    watch.check()

    listed = client.get("/v1/alerts", headers=make_key.headers("admin"))
    refused = client.get("/v1/alerts", headers=make_key.headers("viewer"))
    bad_limit = client.get("/v1/alerts?limit=0", headers=make_key.headers("admin"))

    (item,) = listed.get_json()["items"]
    assert (item["type"], item["subject"]) == (
        "failed_auth_rate",
        f"address:{ATTACKER}",
    )
    one = client.get(f"/v1/alerts/{item['id']}", headers=make_key.headers("admin"))
    assert [a["action"] for a in one.get_json()["actions"]] == [
        "collect_evidence",
        "block_address",
    ]
    assert refused.status_code == 403
    assert bad_limit.status_code == 422


def test_cli_lists_alerts_actions_and_blocks(app, client, runner, watch):
    """``flask watch alerts|actions|blocks`` show what the check did."""
    fail_logins(client, 11)
    watch.check()

    alerts = runner.invoke(args=["watch", "alerts"])
    actions = runner.invoke(args=["watch", "actions"])
    blocks = runner.invoke(args=["watch", "blocks"])
    missing = runner.invoke(args=["watch", "reverse", "9999"])

    assert f"failed_auth_rate        address:{ATTACKER}" in alerts.output
    assert "11 failed authentications in a minute" in alerts.output
    assert "block_address      192.0.2.66            active" in actions.output
    assert "collect_evidence" in actions.output
    (line,) = blocks.output.splitlines()
    address, seconds = line.split()
    assert address == ATTACKER and 3590 <= int(seconds[:-1]) <= 3600
    assert missing.exit_code == 1 and "no action 9999" in missing.output


def test_unknown_alert_and_evidence_are_404(client, make_key):
    """Ids that do not exist, or are not numbers, answer 404 in the envelope."""
    admin = make_key.headers("admin")
    for path in ("/v1/alerts/42", "/v1/alerts/abc", "/v1/evidence/7"):
        response = client.get(path, headers=admin)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
