"""The key cache: requests skip the key query, and changes still apply at once."""

import subprocess
import sys
import time

import pytest
import redis
from sqlalchemy import event
from sqlalchemy import update

from security import keycache
from security import keys
from storage import db
from storage.db import session
from storage.models import ApiKey
from storage.models import utcnow
from tests.conftest import ROOT
from tests.conftest import KeyMaker
from tests.conftest import build_app
from tests.conftest import service_env

TWEET = "water rising fast on main street, two families on a roof"


def _submit(client, key):
    return client.post(
        "/v1/classifications",
        json={"text": TWEET},
        headers={"Authorization": f"Bearer {key}"},
    )


class _KeyQueries:
    """Counts the statements that read the api_keys table."""

    def __init__(self):
        self.count = 0

    def __call__(self, _conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            self.count += 1

    def __enter__(self):
        event.listen(db.get_engine(), "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc):
        event.remove(db.get_engine(), "before_cursor_execute", self)


def test_repeated_requests_read_the_key_row_once(app, client, make_key):
    """Ten submits with one key make one key query; usage still counts all ten."""
    key = make_key("operator")

    with _KeyQueries() as queries:
        statuses = [_submit(client, key).status_code for _ in range(10)]

    assert statuses == [202] * 10
    assert queries.count == 1
    row = session.query(ApiKey).filter_by(prefix=keys.parse_prefix(key)).one()
    assert row.use_count == 10


def test_committed_key_change_bumps_the_generation_in_redis(app, make_key):
    """Revoking through the ORM increments the counter other processes read."""
    watch_redis = redis.Redis.from_url(app.config["BROKER_URL"])
    key = make_key("operator")
    before = keycache.parse_generation(watch_redis.get(keycache.GENERATION_KEY))

    with app.app_context():
        row = session.query(ApiKey).filter_by(prefix=keys.parse_prefix(key)).one()
        row.revoked_at = utcnow()
        session.commit()

    after = keycache.parse_generation(watch_redis.get(keycache.GENERATION_KEY))
    assert after == before + 1
    assert watch_redis.ttl(keycache.GENERATION_KEY) > 0


def test_revocation_in_another_process_applies_on_the_next_request(
    app, client, make_key, redis_url, database_url
):
    """``flask keys revoke`` in its own process: this process's next request is 401.

    This process's cache holds the key; only the generation counter in
    Redis can tell it that the row changed.
    """
    key = make_key("operator")
    prefix = keys.parse_prefix(key)
    watch_redis = redis.Redis.from_url(app.config["BROKER_URL"])
    assert _submit(client, key).status_code == 202
    generation = keycache.parse_generation(watch_redis.get(keycache.GENERATION_KEY))
    assert keycache.cache.get(prefix, generation) is not keycache.MISS
    env = service_env(redis_url, database_url)

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "keys", "revoke", prefix],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    # Nothing in this process emptied its cache: the snapshot is still there,
    # under the generation before the revocation.
    assert keycache.cache.get(prefix, generation) is not keycache.MISS
    response = _submit(client, key)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.fixture
def short_cache_app(redis_url, database_url):
    """The app with snapshots kept for half a second."""
    yield build_app(redis_url, database_url, KEY_CACHE_SECONDS=0.5)
    db.session.remove()


def test_unannounced_change_applies_within_the_cache_lifetime(short_cache_app):
    """A revocation that bumps nothing (raw SQL) still applies after the TTL."""
    app = short_cache_app
    client = app.test_client()
    key = KeyMaker(app)("operator")
    assert _submit(client, key).status_code == 202

    with db.get_engine().begin() as connection:
        connection.execute(
            update(ApiKey)
            .where(ApiKey.prefix == keys.parse_prefix(key))
            .values(revoked_at=utcnow())
        )

    assert _submit(client, key).status_code == 202  # the snapshot, still fresh
    time.sleep(0.6)
    assert _submit(client, key).status_code == 401


def test_unknown_prefix_is_cached_until_a_key_takes_it(app, client):
    """Guesses at one prefix query once; a key created with it then works."""
    key, prefix = keys.generate(prefix="abcd1234")

    with _KeyQueries() as queries:
        statuses = [_submit(client, key).status_code for _ in range(5)]

    assert statuses == [401] * 5
    assert queries.count == 1
    with app.app_context():
        session.add(
            ApiKey(
                name="late",
                prefix=prefix,
                key_hash=keys.hash_key(key, app.config["KEY_PEPPER"]),
                role="operator",
                use_count=0,
            )
        )
        session.commit()
    assert _submit(client, key).status_code == 202
