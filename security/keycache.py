"""A per-process cache of API key rows, so a request does not read its key.

Every authenticated request used to select its key's row. The cache keeps
a read-only snapshot of the fields authentication needs, per prefix, and
the presented secret is still hashed and compared on every request: the
cache saves the query, never the check. A prefix with no row is cached
as well, so a guessed prefix and a real one answer alike.

A change to a key must still take effect at once, wherever it is made (the
API, the ``flask keys`` CLI, the watch's automatic revocation in a
worker). So:

- Any ORM change to an ``ApiKey`` row, once committed, empties this
  process's cache and increments a generation counter in Redis
  (:data:`GENERATION_KEY`).
- Each request reads that counter in the round trip it already makes to
  the watch's Redis (the blocklist check), and a snapshot taken under
  another generation is not used.
- Whatever happens to Redis, a snapshot is used for at most
  ``KEY_CACHE_SECONDS``: with Redis down (or the counter not bumped, as
  when a row is edited by hand in SQL), that is how late a revocation,
  rotation or expiry may take effect in another process.

Writes that bypass the ORM's unit of work (Core ``update()`` statements)
do not bump the generation; only the usage columns are written that way,
and the snapshot does not hold them.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import event

from storage.models import ApiKey

logger = logging.getLogger(__name__)

GENERATION_KEY = "aicrisisalert:keys:generation"
# The counter expires a day after the last change, like every key we keep
# in Redis. When it lapses it reads 0 again: snapshots tagged with a later
# value stop matching, and none lives longer than KEY_CACHE_SECONDS anyway.
_GENERATION_TTL_SECONDS = 24 * 3600
_CHANGED = "aicrisisalert_api_keys_changed"


@dataclass(frozen=True)
class KeySnapshot:
    """What authentication and the views need of a key row."""

    id: int
    prefix: str
    role: str
    key_hash: str
    previous_key_hash: str | None
    previous_valid_until: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row):
        """Return the snapshot of an ``ApiKey`` row."""
        return cls(
            id=row.id,
            prefix=row.prefix,
            role=row.role,
            key_hash=row.key_hash,
            previous_key_hash=row.previous_key_hash,
            previous_valid_until=row.previous_valid_until,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


MISS = object()
# Entries one process keeps at most; past this the cache starts again
# empty, so a flood of made-up prefixes cannot grow it without bound.
_MAX_ENTRIES = 10_000


class KeyCache:
    """Snapshots by prefix, each tagged with the generation it was read under.

    A prefix with no row is kept too (as None), so that a repeated guess
    costs the same as a repeated use of a real key: the answer's timing
    does not tell which prefixes exist. It can still tell whether a prefix
    was looked up by this process since the cache last emptied (a hit
    skips one database query); prefixes are public, so that is accepted.
    """

    def __init__(self):
        self.ttl_seconds = 0.0
        self._entries = {}
        self._lock = threading.Lock()

    def get(self, prefix, generation):
        """Return what is known of ``prefix`` (a snapshot or None), or MISS."""
        entry = self._entries.get(prefix)
        if entry is None:
            return MISS

        snapshot, taken_under, read_at = entry
        if taken_under != generation or time.monotonic() - read_at > self.ttl_seconds:
            return MISS
        return snapshot

    def put(self, prefix, snapshot, generation):
        """Remember ``snapshot`` (None: no such key) read under ``generation``."""
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[prefix] = (snapshot, generation, time.monotonic())

    def clear(self):
        """Forget every snapshot."""
        with self._lock:
            self._entries.clear()


cache = KeyCache()


def read_generation(pipe):
    """Queue the read of the generation counter on a Redis pipeline."""
    pipe.get(GENERATION_KEY)


def parse_generation(raw):
    """Return the generation from its raw Redis value (absent: 0)."""
    return int(raw) if raw is not None else 0


def install(session, *, ttl_seconds, redis_client):
    """Watch ``session`` for committed key changes; set the snapshots' lifetime.

    Args:
        session: the scoped session (its events apply to every session it
            makes).
        ttl_seconds: the longest a snapshot is used (0: no caching).
        redis_client: a callable returning the Redis client that holds
            the generation counter.
    """
    cache.ttl_seconds = float(ttl_seconds)
    cache.clear()
    state = {"redis_client": redis_client}
    if getattr(install, "_listening", False):
        install._state.update(state)
        return

    install._state = state
    install._listening = True

    @event.listens_for(session, "before_flush")
    def _note_key_changes(db_session, _context, _instances):
        touched = (*db_session.new, *db_session.dirty, *db_session.deleted)
        if any(isinstance(item, ApiKey) for item in touched):
            db_session.info[_CHANGED] = True

    @event.listens_for(session, "after_commit")
    def _announce_key_changes(db_session):
        if not db_session.info.pop(_CHANGED, False):
            return
        cache.clear()
        try:
            pipe = install._state["redis_client"]().pipeline(transaction=False)
            pipe.incr(GENERATION_KEY)
            pipe.expire(GENERATION_KEY, _GENERATION_TTL_SECONDS)
            pipe.execute()
        except redis.RedisError as error:
            # Other processes still drop their snapshots within the TTL.
            logger.warning("keys: generation not bumped error=%s", error)

    @event.listens_for(session, "after_rollback")
    def _forget_key_changes(db_session):
        db_session.info.pop(_CHANGED, None)
