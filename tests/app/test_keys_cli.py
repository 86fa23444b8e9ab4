from sqlalchemy import select

from storage.db import session
from storage.models import ApiKey


def test_keys_create_prints_key_last_and_stores_only_hash(app, runner, client):
    """``keys create`` prints a working key last; only its hash is stored."""
    result = runner.invoke(
        args=["keys", "create", "--name", "ops desk", "--role", "operator"]
    )

    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert len(key) >= 32
    row = session.scalars(select(ApiKey)).one()
    assert (row.name, row.role) == ("ops desk", "operator")
    assert key not in (row.key_hash, row.prefix)
    assert row.prefix in key
    response = client.post(
        "/v1/classifications",
        json={"text": "need water at the shelter"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202
    row = session.scalars(select(ApiKey)).one()
    assert row.use_count == 1
    assert row.last_used_at is not None


def test_keys_revoke_refuses_the_key_at_once(app, runner, client, make_key):
    """A revoked key gets 401 on its next request."""
    key = make_key()
    prefix = key.split("_")[1]

    result = runner.invoke(args=["keys", "revoke", prefix])

    assert result.exit_code == 0
    assert f"revoked key prefix={prefix}" in result.output
    response = client.get("/health")
    assert response.status_code == 200
    response = client.post(
        "/v1/classifications",
        json={"text": "need water"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 401


def test_keys_create_refuses_unknown_role(runner):
    """Only the four roles exist."""
    result = runner.invoke(args=["keys", "create", "--name", "x", "--role", "root"])

    assert result.exit_code != 0
    assert "root" in result.output
