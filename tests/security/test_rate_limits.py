"""Rate limits, bans, proxies and a dead Redis, against the real test Redis."""

import io
import json
import time

import pytest
import redis
import sqlalchemy
from sqlalchemy import select

from app import create_app
from app.client import Client
from storage import db
from storage.db import session
from storage.models import SecurityEvent
from tests.conftest import KeyMaker
from tests.conftest import LiveServer
from tests.conftest import build_app
from tests.conftest import free_port
from tests.conftest import make_test_config

TWEET = "Shelter on 5th street is full, families sleeping outside in the rain"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def limited(redis_url, database_url):
    """Build an app with the limiter on; extra settings per test."""
    built = []

    def build(**overrides):
        settings = {"RATELIMIT_ENABLED": True, **overrides}
        application = build_app(redis_url, database_url, **settings)
        built.append(application)
        return application

    yield build
    db.session.remove()


def _poll(client, headers, **kwargs):
    return client.get(
        "/v1/classifications",
        query_string={"ids": UNKNOWN_ID},
        headers=headers,
        **kwargs,
    )


def _events(kind):
    return session.scalars(
        select(SecurityEvent).where(SecurityEvent.kind == kind)
    ).all()


def test_standard_limit_is_twenty_a_minute_then_429_with_retry_after(limited):
    """With the default limits a viewer gets 20 polls, then a 429 in the envelope."""
    app = limited()
    client = app.test_client()
    headers = KeyMaker(app).headers("viewer")

    responses = [_poll(client, headers) for _ in range(21)]

    assert [r.status_code for r in responses[:20]] == [200] * 20
    assert responses[0].headers["X-RateLimit-Limit"] == "20"
    assert responses[0].headers["X-RateLimit-Remaining"] == "19"
    assert responses[19].headers["X-RateLimit-Remaining"] == "0"
    refused = responses[20]
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert "20 per 1 minute" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 61
    assert error["retry_after"] == int(refused.headers["Retry-After"])
    (event,) = _events("rate_limited")
    assert event.key_prefix and event.endpoint == "jobs.list_"
    assert event.client_address == "127.0.0.1"


def test_hourly_limit_of_a_hundred_also_applies(limited):
    """The standard hour allows 100 requests even when the minute allows more."""
    app = limited(RATELIMIT_STANDARD="100/hour;200/minute")
    client = app.test_client()
    headers = KeyMaker(app).headers("viewer")

    codes = [_poll(client, headers).status_code for _ in range(101)]

    assert codes[:100] == [200] * 100
    assert codes[100] == 429


def test_every_limited_response_carries_rate_limit_headers(limited):
    """2xx, 401, 403, 404 and 422 answers of limited endpoints all carry them."""
    app = limited()
    client = app.test_client()
    viewer = KeyMaker(app).headers("viewer")

    responses = {
        "ok": _poll(client, viewer),
        "no key": _poll(client, {}),
        "forbidden": client.post(
            "/v1/classifications", json={"text": TWEET}, headers=viewer
        ),
        "not found": client.get(f"/v1/classifications/{UNKNOWN_ID}", headers=viewer),
        "invalid": client.get("/v1/classifications", headers=viewer),
    }

    assert {k: r.status_code for k, r in responses.items()} == {
        "ok": 200,
        "no key": 401,
        "forbidden": 403,
        "not found": 404,
        "invalid": 422,
    }
    for response in responses.values():
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
            assert name in response.headers
    assert client.get("/health").status_code == 200


def test_emergency_has_its_own_ceiling_beside_the_standard_limit(limited):
    """A key out of standard requests still submits emergencies, up to its own cap."""
    app = limited(RATELIMIT_STANDARD="3/minute", RATELIMIT_EMERGENCY="5/minute")
    client = app.test_client()
    headers = KeyMaker(app).headers("api_user")

    standard = [
        client.post("/v1/classifications", json={"text": TWEET}, headers=headers)
        for _ in range(4)
    ]
    emergency = [
        client.post("/v1/emergency", json={"text": TWEET}, headers=headers)
        for _ in range(6)
    ]

    assert [r.status_code for r in standard] == [202, 202, 202, 429]
    assert [r.status_code for r in emergency] == [202] * 5 + [429]
    assert emergency[0].headers["X-RateLimit-Limit"] == "5"


def test_keyless_requests_are_limited_by_address_even_on_emergency(limited):
    """Without a valid key the standard limit applies per address, emergency too."""
    app = limited(RATELIMIT_STANDARD="4/minute")
    client = app.test_client()
    bad = {"Authorization": "Bearer aca_deadbeef_" + "x" * 43}

    codes = [
        client.post("/v1/emergency", json={"text": TWEET}, headers=bad).status_code
        for _ in range(5)
    ]

    assert codes == [401, 401, 401, 401, 429]
    assert len(_events("auth_failed")) == 5
    (limited_event,) = _events("rate_limited")
    assert limited_event.details["identity"] == "addr:127.0.0.1"


def test_roles_get_their_own_limits(limited):
    """Operators get the operator limit from settings, api users the standard one."""
    app = limited()
    keys = KeyMaker(app)
    client = app.test_client()

    operator = client.post(
        "/v1/classifications", json={"text": TWEET}, headers=keys.headers("operator")
    )
    api_user = client.post(
        "/v1/classifications", json={"text": TWEET}, headers=keys.headers("api_user")
    )

    assert operator.headers["X-RateLimit-Limit"] == "1200"
    assert api_user.headers["X-RateLimit-Limit"] == "20"


def test_two_processes_share_one_bucket_in_redis(limited, redis_url, database_url):
    """Two apps (two gunicorn workers) on one Redis count into the same bucket."""
    first = limited(RATELIMIT_STANDARD="6/minute")
    second = create_app(
        make_test_config(
            redis_url,
            database_url,
            RATELIMIT_ENABLED=True,
            RATELIMIT_STANDARD="6/minute",
        )
    )
    headers = KeyMaker(first).headers("viewer")
    clients = [first.test_client(), second.test_client()]

    codes = [_poll(clients[n % 2], headers).status_code for n in range(7)]

    assert codes == [200] * 6 + [429]


def test_repeated_breaches_ban_and_the_ban_grows(limited, redis_url):
    """Two 429s ban the key; after the ban, two more ban it twice as long."""
    app = limited(
        RATELIMIT_STANDARD="2/minute",
        BAN_AFTER_BREACHES=2,
        BAN_BASE_SECONDS=30,
        BAN_GROWTH=2,
    )
    client = app.test_client()
    key = KeyMaker(app)("viewer")
    headers = {"Authorization": f"Bearer {key}"}
    ban_key = f"aicrisisalert:ban:key:{key.split('_')[1]}"
    store = redis.Redis.from_url(f"{redis_url}/2")

    first = [_poll(client, headers) for _ in range(5)]

    assert [r.status_code for r in first] == [200, 200, 429, 429, 429]
    assert first[3].get_json()["error"]["code"] == "rate_limited"
    banned = first[4]
    assert banned.get_json()["error"]["code"] == "banned"
    assert 25 <= int(banned.headers["Retry-After"]) <= 30
    assert banned.headers["X-RateLimit-Remaining"] == "0"
    assert 25_000 < store.pttl(ban_key) <= 30_000

    # Redis drops a ban when it expires; deleting it is that moment.
    store.delete(ban_key)
    second = [_poll(client, headers) for _ in range(3)]

    assert [r.get_json()["error"]["code"] for r in second] == [
        "rate_limited",
        "rate_limited",
        "banned",
    ]
    assert 55 <= int(second[2].headers["Retry-After"]) <= 60
    bans = _events("banned")
    assert [(e.details["level"], e.details["seconds"]) for e in bans] == [
        (1, 30),
        (2, 60),
    ]
    assert all(e.key_prefix == key.split("_")[1] for e in bans)
    assert len(_events("rate_limited")) == 4


def test_banned_address_is_refused_before_its_key_is_checked(limited):
    """An address banned for bad keys is refused even with a valid key."""
    app = limited(RATELIMIT_STANDARD="1/minute", BAN_AFTER_BREACHES=1)
    client = app.test_client()
    good = KeyMaker(app).headers("viewer")
    bad = {"Authorization": "Bearer aca_deadbeef_" + "x" * 43}

    codes = [_poll(client, bad).status_code for _ in range(2)]
    with_good_key = _poll(client, good)

    assert codes == [401, 429]
    assert with_good_key.status_code == 429
    assert with_good_key.get_json()["error"]["code"] == "banned"
    assert len(_events("auth_failed")) == 2


def test_forged_forwarded_for_does_not_open_a_new_bucket(limited):
    """With no trusted proxy, X-Forwarded-For is ignored for the client address."""
    app = limited(RATELIMIT_STANDARD="3/minute")
    client = app.test_client()

    codes = [
        _poll(client, {"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(5)
    ]

    assert codes == [401, 401, 401, 429, 429]
    addresses = {e.client_address for e in _events("auth_failed")}
    assert addresses == {"127.0.0.1"}


def test_one_trusted_proxy_takes_only_the_address_it_appended(limited):
    """Behind one proxy, the proxy's last entry names the client; forged ones don't."""
    app = limited(RATELIMIT_STANDARD="2/minute", TRUSTED_PROXY_COUNT=1)
    client = app.test_client()

    def from_client(forged, real):
        return _poll(client, {"X-Forwarded-For": f"{forged}, {real}"}).status_code

    same_client = [from_client(f"198.51.100.{n}", "192.0.2.10") for n in range(3)]
    other_client = from_client("198.51.100.99", "192.0.2.11")

    assert same_client == [401, 401, 429]
    assert other_client == 401
    assert {e.client_address for e in _events("auth_failed")} == {
        "192.0.2.10",
        "192.0.2.11",
    }


@pytest.fixture
def app_with_dead_limiter_store(redis_url, database_url):
    """Limiter on, its Redis on a port where nothing listens; the broker is up."""
    redis.Redis.from_url(f"{redis_url}/0").flushdb()
    dead = f"redis://127.0.0.1:{free_port()}/2"
    application = create_app(
        make_test_config(
            redis_url,
            database_url,
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URL=dead,
            RATELIMIT_STANDARD="3/minute",
        )
    )
    db.create_all()
    yield application
    db.session.remove()


def test_dead_limiter_store_fails_open_for_jobs_and_closed_for_keys(
    app_with_dead_limiter_store,
):
    """Redis down: jobs go on (in-memory limits), key admin gets 503; all fast."""
    app = app_with_dead_limiter_store
    client = app.test_client()
    keys = KeyMaker(app)
    operator, admin = keys.headers("api_user"), keys.headers("admin")
    timings = []

    def timed(call):
        started = time.monotonic()
        response = call()
        timings.append(time.monotonic() - started)
        return response

    emergency = timed(
        lambda: client.post("/v1/emergency", json={"text": TWEET}, headers=operator)
    )
    standard = [
        timed(
            lambda: client.post(
                "/v1/classifications", json={"text": TWEET}, headers=operator
            )
        )
        for _ in range(4)
    ]
    admin_list = timed(lambda: client.get("/v1/keys", headers=admin))
    reverse = timed(lambda: client.post("/v1/actions/1/reverse", headers=admin))
    alerts = timed(lambda: client.get("/v1/alerts", headers=admin))

    # Reversing an action (restoring a revoked key) fails closed like key
    # admin; reading the alerts goes on.
    assert reverse.status_code == 503
    assert alerts.status_code == 200
    assert emergency.status_code == 202
    # The in-memory fallback keeps the same limit per process.
    assert [r.status_code for r in standard] == [202, 202, 202, 429]
    assert admin_list.status_code == 503
    assert admin_list.get_json()["error"]["code"] == "service_unavailable"
    assert admin_list.headers["Retry-After"] == "5"
    assert max(timings) < 1.0, timings


def test_operator_can_run_the_client_for_500_tweets_under_default_limits(limited):
    """The project's client (500 submits, then bulk polls) never meets a 429."""
    app = limited()
    key = KeyMaker(app)("operator")

    with LiveServer(app) as server:
        http = Client(server.url, key)
        ids = [
            http.submit(f"{TWEET} #{n}", emergency=n % 10 == 0)["id"]
            for n in range(500)
        ]
        # About what `python -m app.client` sends while 500 jobs finish:
        # five bulk polls of 100 ids every half second for 15 seconds.
        for _round in range(30):
            for start in range(0, 500, 100):
                assert len(http.get_many(ids[start : start + 100])) == 100
        last = http.http.get(
            f"{server.url}/v1/classifications", params={"ids": ids[0]}, timeout=10
        )

    assert last.status_code == 200
    assert int(last.headers["X-RateLimit-Remaining"]) > 0
    assert _events("rate_limited") == []


def test_admin_lifts_a_ban_through_the_api_and_the_cli(limited):
    """DELETE /v1/bans/<identity> and ``flask watch unban`` end a ban at once."""
    app = limited(RATELIMIT_STANDARD="1/minute", BAN_AFTER_BREACHES=1)
    client = app.test_client()
    maker = KeyMaker(app)
    viewer = maker("viewer")
    headers = {"Authorization": f"Bearer {viewer}"}
    admin = maker.headers("admin")
    identity = f"key:{viewer.split('_')[1]}"

    codes = [_poll(client, headers).status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    assert _poll(client, headers).get_json()["error"]["code"] == "banned"

    lifted = client.delete(f"/v1/bans/{identity}", headers=admin)

    assert lifted.status_code == 200
    assert lifted.get_json() == {"identity": identity, "lifted": True}
    again = client.delete(f"/v1/bans/{identity}", headers=admin)
    assert again.get_json()["lifted"] is False
    assert [e.details["identity"] for e in _events("ban_lifted")] == [identity]
    assert client.delete("/v1/bans/everyone", headers=admin).status_code == 422
    # No longer banned: only the ordinary minute limit applies (and, with
    # one strike allowed here, this breach bans the key again).
    assert _poll(client, headers).get_json()["error"]["code"] == "rate_limited"
    assert _poll(client, headers).get_json()["error"]["code"] == "banned"
    result = app.test_cli_runner().invoke(args=["watch", "unban", identity])
    assert result.exit_code == 0, result.output
    assert f"lifted ban {identity}" in result.output
    assert _poll(client, headers).get_json()["error"]["code"] == "rate_limited"


def test_a_batch_counts_one_request_per_hundred_items(limited):
    """A batch costs one request per 100 items, rounded up.

    An api_user has 20 a minute: six 250-item batches cost 18, the seventh
    (3 more) is refused, and a single submit (1) still fits.
    """
    app = limited()
    client = app.test_client()
    headers = KeyMaker(app).headers("api_user")
    batch = {"items": [{"text": TWEET}] * 250}

    statuses = [
        client.post("/v1/classifications/batch", json=batch, headers=headers)
        for _ in range(6)
    ]
    refused = client.post("/v1/classifications/batch", json=batch, headers=headers)

    assert [r.status_code for r in statuses] == [202] * 6
    assert statuses[0].headers["X-RateLimit-Remaining"] == "17"
    assert statuses[5].headers["X-RateLimit-Remaining"] == "2"
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert (
        client.post(
            "/v1/classifications", json={"text": TWEET}, headers=headers
        ).status_code
        == 202
    )


def _script_runs(store):
    """Return how many scripts and ban lookups the Redis server has run."""
    stats = store.info("commandstats")
    return {
        name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
        for name in ("evalsha", "eval", "pttl")
    }


def test_a_limited_request_costs_one_script_run_once_its_key_is_cached(
    limited, redis_url
):
    """Bans and both limits of a request are one script run; no other lookup."""
    app = limited()
    client = app.test_client()
    headers = KeyMaker(app).headers("viewer")
    store = redis.Redis.from_url(f"{redis_url}/2")
    _poll(client, headers)
    before = _script_runs(store)

    responses = [_poll(client, headers) for _ in range(5)]

    after = _script_runs(store)
    assert [r.status_code for r in responses] == [200] * 5
    assert after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"] == 5
    # Redis counts the commands a script runs too: the two bans (address and
    # key) looked up inside each run, and no lookup of a ban on its own.
    assert after["pttl"] - before["pttl"] == 2 * 5
    assert responses[-1].headers["X-RateLimit-Remaining"] == "14"


def test_limit_windows_expire_and_leave_no_key_without_a_ttl(limited, redis_url):
    """A limit reached is a 429 until its window passes, then requests pass again."""
    app = limited(RATELIMIT_STANDARD="2/second")
    client = app.test_client()
    headers = KeyMaker(app).headers("viewer")
    store = redis.Redis.from_url(f"{redis_url}/2")

    first = [_poll(client, headers) for _ in range(3)]
    windows = store.keys("aicrisisalert:limit:*")
    time.sleep(1.1)
    later = _poll(client, headers)

    assert [r.status_code for r in first] == [200, 200, 429]
    assert first[2].get_json()["error"]["message"] == (
        "rate limit exceeded: 2 per 1 second"
    )
    # The reset is rounded up to the next whole second, as the headers say it.
    assert first[2].headers["Retry-After"] in ("1", "2")
    assert windows and all(0 < store.ttl(name) <= 1 for name in windows)
    assert later.status_code == 200
    assert later.headers["X-RateLimit-Remaining"] == "1"


def test_banned_address_with_an_unread_key_costs_no_key_query(limited):
    """A banned address is refused before a key it sends is read from the database."""
    app = limited(RATELIMIT_STANDARD="1/minute", BAN_AFTER_BREACHES=1)
    client = app.test_client()
    bad = {"Authorization": "Bearer aca_deadbeef_" + "x" * 43}
    assert [_poll(client, bad).status_code for _ in range(2)] == [401, 429]
    fresh = KeyMaker(app).headers("viewer")
    queries = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            queries.append(statement)

    sqlalchemy.event.listen(db.get_engine(), "before_cursor_execute", count)
    try:
        refused = _poll(client, fresh)
    finally:
        sqlalchemy.event.remove(db.get_engine(), "before_cursor_execute", count)

    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "banned"
    assert queries == []
    assert len(_events("auth_failed")) == 2


def test_dead_limiter_store_counts_a_batch_by_its_items_in_memory(
    app_with_dead_limiter_store,
):
    """With Redis down the in-memory fallback charges a batch its full cost."""
    app = app_with_dead_limiter_store
    client = app.test_client()
    headers = KeyMaker(app).headers("api_user")
    batch = {"items": [{"text": TWEET}] * 250}

    first = client.post("/v1/classifications/batch", json=batch, headers=headers)
    second = client.post("/v1/classifications/batch", json=batch, headers=headers)

    assert first.status_code == 202
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert second.status_code == 429
    assert second.get_json()["error"]["code"] == "rate_limited"


def test_a_chunked_batch_is_charged_as_the_largest_batch(limited):
    """No Content-Length: the batch cannot be sized first, so it costs the most."""
    app = limited(RATELIMIT_BY_ROLE={"operator": "100/minute"})
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")
    body = json.dumps({"items": [{"text": TWEET}] * 3}).encode()

    # No Content-Length; gunicorn marks a chunked body's end this way.
    chunked = client.post(
        "/v1/classifications/batch",
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    sized = client.post(
        "/v1/classifications/batch", json=json.loads(body), headers=headers
    )

    assert chunked.status_code == 202, chunked.get_json()
    assert chunked.get_json()["count"] == 3
    # 1,000 items at 100 a request: the chunked one cost 10, the sized one 1.
    assert chunked.headers["X-RateLimit-Remaining"] == "90"
    assert sized.headers["X-RateLimit-Remaining"] == "89"


def test_deeply_nested_json_is_a_400_and_is_counted(limited):
    """Nesting past the parser's depth is malformed JSON, never a 500."""
    app = limited(RATELIMIT_BY_ROLE={"operator": "100/minute"})
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")
    nested = "[" * 100_000 + "]" * 100_000

    for path in ("/v1/classifications/batch", "/v1/classifications", "/v1/emergency"):
        response = client.post(
            path, data=nested, headers=headers, content_type="application/json"
        )
        assert response.status_code == 400, (path, response.status_code)
        assert response.get_json()["error"]["code"] == "malformed_json"
    keyless = client.post(
        "/v1/classifications/batch", data=nested, content_type="application/json"
    )
    assert keyless.status_code == 401
    assert _poll(client, headers).headers["X-RateLimit-Remaining"] == "97"


def test_keyless_batch_body_is_never_parsed(limited):
    """A request refused for its key costs 1 and its body is not read."""
    app = limited()
    client = app.test_client()
    parsed = []
    original = app.json.loads

    def counting(data, **kwargs):
        parsed.append(len(data))
        return original(data, **kwargs)

    app.json.loads = counting
    body = json.dumps({"items": [{"text": TWEET}] * 500})
    response = client.post(
        "/v1/classifications/batch",
        data=body,
        headers={"Authorization": "Bearer aca_deadbeef_" + "x" * 43},
        content_type="application/json",
    )

    assert response.status_code == 401
    assert parsed == []


def test_a_batch_above_the_whole_limit_is_a_422_not_a_breach(limited):
    """A batch no wait could let through says what would, and earns no strike."""
    app = limited(RATELIMIT_BY_ROLE={"operator": "5/minute"}, BAN_AFTER_BREACHES=2)
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")
    items = [{"text": TWEET}] * 600

    responses = [
        client.post("/v1/classifications/batch", json={"items": items}, headers=headers)
        for _ in range(3)
    ]

    assert [r.status_code for r in responses] == [422] * 3
    message = responses[0].get_json()["error"]["message"]
    assert "counts as 6 requests" in message and "at most 500 items" in message
    assert _events("rate_limited") == []
    accepted = client.post(
        "/v1/classifications/batch", json={"items": items[:500]}, headers=headers
    )
    assert accepted.status_code == 202


def test_a_key_banned_on_standard_endpoints_still_reaches_emergency(limited):
    """A ban earned by polling refuses no emergency; elsewhere the key stays banned."""
    app = limited(
        RATELIMIT_BY_ROLE={"operator": "2/minute"},
        BAN_AFTER_BREACHES=2,
    )
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")

    polls = [_poll(client, headers) for _ in range(5)]
    emergency = client.post("/v1/emergency", json={"text": TWEET}, headers=headers)

    assert [r.status_code for r in polls[:2]] == [200, 200]
    assert polls[-1].get_json()["error"]["code"] == "banned"
    assert emergency.status_code == 202, emergency.get_json()
    assert _poll(client, headers).get_json()["error"]["code"] == "banned"


def test_retry_after_of_a_refused_batch_waits_for_room_for_its_cost(limited):
    """A batch costing 2 is told to wait until two entries have left, not one."""
    app = limited(
        RATELIMIT_BY_ROLE={"operator": "3 per 10 seconds"},
        RATELIMIT_BATCH_ITEMS_PER_REQUEST=1,
    )
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")
    assert _poll(client, headers).status_code == 200
    time.sleep(2)
    assert [_poll(client, headers).status_code for _ in range(2)] == [200, 200]

    two = [{"text": TWEET}] * 2
    refused = client.post(
        "/v1/classifications/batch", json={"items": two}, headers=headers
    )

    assert refused.status_code == 429
    # The oldest entry leaves in about 8 s; room for two comes about 2 s later.
    assert int(refused.headers["Retry-After"]) >= 9


def test_a_viewer_on_emergency_is_counted_at_its_own_limit(limited):
    """A key that may not submit gets 403s at its standard limit, not the ceiling."""
    app = limited()
    client = app.test_client()
    headers = KeyMaker(app).headers("viewer")

    tries = [
        client.post("/v1/emergency", json={"text": TWEET}, headers=headers)
        for _ in range(21)
    ]

    assert [r.status_code for r in tries[:20]] == [403] * 20
    assert tries[0].headers["X-RateLimit-Limit"] == "20"
    assert tries[20].status_code == 429


def test_headers_describe_the_shortest_window_in_seconds(limited):
    """A limit of 10 per 90 seconds is longer than 20 a minute, whatever the units."""
    app = limited(RATELIMIT_BY_ROLE={"operator": "10 per 90 seconds;20/minute"})
    client = app.test_client()
    headers = KeyMaker(app).headers("operator")

    response = _poll(client, headers)

    assert response.headers["X-RateLimit-Limit"] == "20"
    assert 55 <= int(response.headers["X-RateLimit-Retry-After"]) <= 61
