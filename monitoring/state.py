"""The watch's state in Redis: the address blocklist and detailed logging.

Both expire by themselves (Redis TTLs), so a block lapses on time even if
nothing runs to lift it.
"""

import json

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from security import keycache

KEY_PREFIX = "aicrisisalert:"
_BLOCK = KEY_PREFIX + "block:"
_DETAILED_LOGGING = KEY_PREFIX + "detailed-logging"
_clients = {}


def client_for(settings):
    """Return the process's Redis client for the watch (one pool per URL)."""
    url = settings.get("MONITOR_REDIS_URL") or settings["BROKER_URL"]
    if url not in _clients:
        timeout = settings["BROKER_TIMEOUT_SECONDS"]
        # One quick retry: a request never waits long on the watch.
        _clients[url] = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    return _clients[url]


def block(client, address, *, seconds, reason, action_id=None):
    """Block ``address`` for ``seconds``; a repeat extends the block."""
    payload = {"reason": reason, "action_id": action_id}
    client.set(_BLOCK + address, json.dumps(payload), ex=int(seconds))


def unblock(client, address):
    """Lift the block on ``address``; return whether there was one."""
    return bool(client.delete(_BLOCK + address))


def blocks(client):
    """Return ``{address: seconds left}`` for every current block."""
    found = {}
    for key in client.scan_iter(match=_BLOCK + "*", count=500):
        ttl = client.ttl(key)
        if ttl and ttl > 0:
            found[key.decode()[len(_BLOCK) :]] = ttl
    return found


def request_state(client, address):
    """Return ``(blocked, detailed_logging, key_generation)``, in one round trip.

    ``key_generation`` is the API keys' change counter
    (:mod:`security.keycache`), read here so that it costs no round trip
    of its own.
    """
    pipe = client.pipeline(transaction=False)
    pipe.exists(_BLOCK + (address or "-"))
    pipe.exists(_DETAILED_LOGGING)
    keycache.read_generation(pipe)
    blocked, detailed, generation = pipe.execute()
    return bool(blocked), bool(detailed), keycache.parse_generation(generation)


def enable_detailed_logging(client, *, seconds, action_id=None):
    """Log every request in detail for ``seconds``."""
    client.set(_DETAILED_LOGGING, json.dumps({"action_id": action_id}), ex=seconds)


def disable_detailed_logging(client):
    """Return to ordinary logging; return whether it was on."""
    return bool(client.delete(_DETAILED_LOGGING))
