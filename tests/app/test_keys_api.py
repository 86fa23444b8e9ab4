from datetime import timedelta

import pytest
from sqlalchemy import select

from app.keys import service
from storage.db import session
from storage.jobs import as_utc
from storage.models import ApiKey
from storage.models import SecurityEvent
from storage.models import utcnow

TWEET = "Gas leak reported near the market, area being evacuated"


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def submit(client, key):
    return client.post("/v1/classifications", json={"text": TWEET}, headers=bearer(key))


def row_of(key):
    return service.get_by_prefix(session, prefix=key.split("_")[1])


@pytest.fixture
def admin(make_key):
    return make_key("admin", name="admin")


def test_create_returns_the_key_once_and_it_works(client, admin):
    """POST /v1/keys answers 201 with a working key; lists never show it."""
    response = client.post(
        "/v1/keys",
        json={"name": "field team", "role": "operator", "expires_in_days": 30},
        headers=bearer(admin),
    )

    assert response.status_code == 201
    body = response.get_json()
    key = body["key"]
    assert key.startswith(f"aca_{body['prefix']}_") and len(key) >= 32
    assert response.headers["Location"] == f"/v1/keys/{body['prefix']}"
    assert (body["role"], body["state"]) == ("operator", "active")
    assert 29 <= (as_utc(row_of(key).expires_at) - utcnow()).days < 30
    assert submit(client, key).status_code == 202
    listed = client.get("/v1/keys", headers=bearer(admin)).get_json()["items"]
    assert key not in str(listed)
    mine = next(item for item in listed if item["prefix"] == body["prefix"])
    assert mine["use_count"] == 1 and mine["last_used_at"]
    assert "key_hash" not in mine


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "", "role": "viewer"}, "name"),
        ({"role": "viewer"}, "name"),
        ({"name": "x", "role": "viewer", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "role": "viewer", "expires_in_days": "7"}, "expires_in_days"),
        ({"name": "x", "role": "viewer", "owner": "me"}, "owner"),
    ],
)
def test_create_refuses_bad_bodies(client, admin, body, field):
    """Bad creation bodies are 422 naming the field."""
    response = client.post("/v1/keys", json=body, headers=bearer(admin))

    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_rotation_keeps_the_old_secret_for_the_grace_period(client, admin, make_key):
    """After rotation both secrets work; once the grace ends only the new one."""
    old = make_key("operator")
    job_id = submit(client, old).get_json()["id"]
    prefix = old.split("_")[1]

    response = client.post(
        f"/v1/keys/{prefix}/rotate", json={"grace_seconds": 600}, headers=bearer(admin)
    )

    assert response.status_code == 200
    new = response.get_json()["key"]
    assert new != old and new.startswith(f"aca_{prefix}_")
    assert submit(client, old).status_code == 202
    assert submit(client, new).status_code == 202
    # The row, and so the jobs, stay with the key across the rotation.
    polled = client.get(f"/v1/classifications/{job_id}", headers=bearer(new))
    assert polled.status_code == 200

    # The grace period ending is this moment.
    row = row_of(new)
    row.previous_valid_until = utcnow() - timedelta(seconds=1)
    session.commit()

    assert submit(client, old).status_code == 401
    assert submit(client, new).status_code == 202
    reasons = [
        event.details["reason"]
        for event in session.scalars(
            select(SecurityEvent).where(SecurityEvent.kind == "auth_failed")
        )
    ]
    assert reasons == ["rotated out: the grace period of the old secret is over"]


def test_rotation_without_grace_and_twice(client, admin, make_key):
    """Grace 0 ends the old secret at once; a second rotation ends the first."""
    first = make_key("viewer")
    prefix = first.split("_")[1]
    rotate = f"/v1/keys/{prefix}/rotate"

    second = client.post(
        rotate, json={"grace_seconds": 0}, headers=bearer(admin)
    ).get_json()["key"]
    third = client.post(rotate, headers=bearer(admin)).get_json()["key"]

    poll = "/v1/classifications?ids=00000000-0000-4000-8000-000000000000"
    assert client.get(poll, headers=bearer(first)).status_code == 401
    assert client.get(poll, headers=bearer(second)).status_code == 200
    assert client.get(poll, headers=bearer(third)).status_code == 200
    kinds = [e.kind for e in session.scalars(select(SecurityEvent))]
    assert kinds.count("key_rotated") == 2


def test_rotation_refuses_too_long_grace_and_revoked_keys(client, admin, make_key):
    """Grace over the maximum is 422; rotating a revoked key is 409."""
    key = make_key("viewer")
    prefix = key.split("_")[1]

    too_long = client.post(
        f"/v1/keys/{prefix}/rotate",
        json={"grace_seconds": 31 * 24 * 3600},
        headers=bearer(admin),
    )
    client.delete(f"/v1/keys/{prefix}", headers=bearer(admin))
    revoked = client.post(f"/v1/keys/{prefix}/rotate", headers=bearer(admin))
    unknown = client.post("/v1/keys/ffffffff/rotate", headers=bearer(admin))

    assert too_long.status_code == 422
    assert "grace_seconds" in too_long.get_json()["error"]["fields"]
    assert revoked.status_code == 409
    assert unknown.status_code == 404


def test_revoke_ends_both_secrets(client, admin, make_key):
    """DELETE revokes at once, the grace secret of a rotation included."""
    old = make_key("operator")
    prefix = old.split("_")[1]
    new = client.post(f"/v1/keys/{prefix}/rotate", headers=bearer(admin)).get_json()[
        "key"
    ]

    response = client.delete(f"/v1/keys/{prefix}", headers=bearer(admin))

    assert response.status_code == 200
    assert response.get_json()["state"] == "revoked"
    assert submit(client, old).status_code == 401
    assert submit(client, new).status_code == 401


def test_expired_key_is_401(client, make_key):
    """A key past its expiry is refused and the failure says why."""
    key = make_key("operator", expires_at=utcnow() - timedelta(minutes=1))

    assert submit(client, key).status_code == 401
    (event,) = session.scalars(select(SecurityEvent)).all()
    assert event.details["reason"] == "expired"
    assert event.key_prefix == key.split("_")[1]


def test_cli_rotate_prints_a_new_working_key(runner, client, make_key):
    """``flask keys rotate`` prints the new key last; the old one works in grace."""
    old = make_key("operator")
    prefix = old.split("_")[1]

    result = runner.invoke(args=["keys", "rotate", prefix, "--grace-seconds", "60"])

    assert result.exit_code == 0, result.output
    new = result.output.strip().splitlines()[-1]
    assert new.startswith(f"aca_{prefix}_") and new != old
    assert submit(client, new).status_code == 202
    assert submit(client, old).status_code == 202
    listing = runner.invoke(args=["keys", "list"]).output
    assert "old-secret-until=" in listing and prefix in listing
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
    assert row.rotated_at is not None


def test_cli_create_with_expiry_and_rotate_refusals(runner, make_key):
    """``--expires-in-days`` sets the expiry; unknown or revoked keys are refused."""
    created = runner.invoke(
        args=[
            "keys",
            "create",
            "--name",
            "x",
            "--role",
            "viewer",
            "--expires-in-days",
            "7",
        ]
    )
    prefix = created.output.strip().splitlines()[-1].split("_")[1]
    runner.invoke(args=["keys", "revoke", prefix])

    revoked = runner.invoke(args=["keys", "rotate", prefix])
    unknown = runner.invoke(args=["keys", "rotate", "ffffffff"])

    assert created.exit_code == 0
    assert "expires=" in runner.invoke(args=["keys", "list"]).output
    assert revoked.exit_code != 0 and "revoked" in revoked.output
    assert unknown.exit_code != 0 and "no key" in unknown.output
