"""Progressive bans: strikes for limit breaches, bans that grow, in Redis.

Every call waits at most the timeout it was built with, and a store that
failed is not asked again for a second, so a dead Redis costs a request
about nothing; the caller decides whether that fails open or closed.
"""

import logging
import math
import time

import redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "aicrisisalert"
# Seconds a store that failed is left alone before it is tried again.
_STORE_PAUSE_SECONDS = 1.0

# Count a breach; at the threshold, clear the count, raise the offence
# level and set a ban that grows with it. Atomic, so workers racing on one
# identity cannot skip a level. KEYS: strikes, offences, ban. ARGV: window,
# threshold, memory, base, growth, max.
_STRIKE_SCRIPT = """
local strikes = redis.call('INCR', KEYS[1])
if strikes == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if strikes < tonumber(ARGV[2]) then return {strikes, 0, 0} end
redis.call('DEL', KEYS[1])
local level = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local seconds = tonumber(ARGV[4]) * tonumber(ARGV[5]) ^ (level - 1)
seconds = math.floor(math.min(seconds, tonumber(ARGV[6])))
redis.call('SET', KEYS[3], level, 'EX', seconds)
return {strikes, level, seconds}
"""


class StoreUnavailable(Exception):
    """The Redis that keeps strikes and bans did not answer."""


class BanStore:
    """Strikes and bans in Redis, with short timeouts and a pause after failure."""

    def __init__(self, url, *, timeout_seconds, settings):
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            retry_on_timeout=False,
        )
        self.settings = settings
        self._strike = self.client.register_script(_STRIKE_SCRIPT)
        self._paused_until = 0.0

    @staticmethod
    def _key(kind, identity):
        return f"{KEY_PREFIX}:{kind}:{identity}"

    def _call(self, action):
        if time.monotonic() < self._paused_until:
            raise StoreUnavailable("paused after a recent failure")
        try:
            return action()
        except redis.RedisError as error:
            self._paused_until = time.monotonic() + _STORE_PAUSE_SECONDS
            logger.warning("limits: ban store unavailable error=%s", error)
            raise StoreUnavailable(str(error)) from error

    def ban_remaining(self, identities):
        """Return the seconds left on the longest ban among ``identities`` (0: none)."""

        def lookup():
            pipe = self.client.pipeline(transaction=False)
            for identity in identities:
                pipe.pttl(self._key("ban", identity))
            return pipe.execute()

        remaining_ms = max([0, *self._call(lookup)])
        return math.ceil(remaining_ms / 1000)

    def lift(self, identity):
        """End ``identity``'s ban and clear its strikes; return whether it was banned.

        The memory of past offences is kept, so a repeat offender's next ban
        still grows.
        """

        def remove():
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self._key("ban", identity))
            pipe.delete(self._key("strikes", identity))
            return pipe.execute()

        return bool(self._call(remove)[0])

    def strike(self, identity):
        """Count a limit breach; return ``(strikes, ban_level, ban_seconds)``."""
        s = self.settings
        return tuple(
            int(part)
            for part in self._call(
                lambda: self._strike(
                    keys=[
                        self._key("strikes", identity),
                        self._key("offences", identity),
                        self._key("ban", identity),
                    ],
                    args=[
                        s["BAN_BREACH_WINDOW_SECONDS"],
                        s["BAN_AFTER_BREACHES"],
                        s["BAN_MEMORY_SECONDS"],
                        s["BAN_BASE_SECONDS"],
                        s["BAN_GROWTH"],
                        s["BAN_MAX_SECONDS"],
                    ],
                )
            )
        )
