"""Rate-limit windows and progressive bans, in Redis.

A request's whole check, every ban that applies to it and every limit it
counts against, is one script run: one round trip on the path of every
request. Limits are moving windows (a sliding log: exactly N requests in
any window, with no double burst at a window's edge), one Redis list of
timestamps per identity, scope and limit, newest first, holding only the
entries still inside the window, so it never holds more than the limit.

Strikes for limit breaches and bans that grow are kept beside them. Every
call waits at most the timeout it was built with, and a store that failed
is not asked again for a second, so a dead Redis costs a request about
nothing; the caller decides whether that fails open or closed.
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


# Refuse the request if any ban applies; else count it against each limit in
# turn, stopping at the first it would exceed (the limits before it keep
# the hit, the ones after it are not counted). The clock is Redis's, so
# every API host counts on one clock. KEYS: the ban keys, then one window
# per limit. ARGV: the number of ban keys, the request's cost, then
# amount and window seconds per limit. Returns {1, ban ms left} when
# banned, else {0, index of the limit exceeded or 0, then per limit
# counted: remaining, seconds until its oldest entry leaves the window (for
# the limit exceeded: until enough have left for the request's cost)}.
_CHECK_SCRIPT = """
local bans = tonumber(ARGV[1])
local longest = 0
for i = 1, bans do
  local left = redis.call('PTTL', KEYS[i])
  if left > longest then longest = left end
end
if longest > 0 then return {1, longest} end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local stamp = string.format('%.6f', now)
local cost = tonumber(ARGV[2])
local result = {0, 0}
for i = bans + 1, #KEYS do
  local key = KEYS[i]
  local arg = 3 + (i - bans - 1) * 2
  local amount, window = tonumber(ARGV[arg]), tonumber(ARGV[arg + 1])
  local start = now - window
  local newest = redis.call('LINDEX', key, 0)
  if newest and tonumber(newest) < start then
    redis.call('DEL', key)
  else
    local oldest = redis.call('LINDEX', key, -1)
    while oldest and tonumber(oldest) < start do
      redis.call('RPOP', key)
      oldest = redis.call('LINDEX', key, -1)
    end
  end
  local count = redis.call('LLEN', key)
  local allowed = count + cost <= amount
  if allowed then
    for _ = 1, cost do redis.call('LPUSH', key, stamp) end
    redis.call('EXPIRE', key, window)
    count = count + cost
  end
  -- Allowed: the window has room again when its oldest entry leaves.
  -- Refused: when enough entries have left for this request's cost.
  local leaving = allowed and 1 or (count + cost - amount)
  local oldest = redis.call('LINDEX', key, -leaving)
  local reset = (oldest and tonumber(oldest) or now) + window - now
  table.insert(result, amount - count)
  table.insert(result, string.format('%.6f', reset))
  if not allowed then
    result[2] = i - bans
    return result
  end
end
return result
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
        self._check = self.client.register_script(_CHECK_SCRIPT)
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

    def check(self, identities, windows, *, cost):
        """Refuse a banned request, or count it against each of its limits.

        Args:
            identities: the identities whose bans refuse the request.
            windows: ``(name, amount, seconds)`` per limit, in the order they
                are counted (the first one exceeded stops the count).
            cost: how many requests this one counts for.

        Returns:
            ``(ban_seconds, exceeded, stats)``: the seconds left on the
            longest ban (0: none; then nothing was counted), the index of
            the limit exceeded (None: every one allowed the request), and
            ``(remaining, seconds until reset)`` for each limit counted.
        """
        keys = [self._key("ban", identity) for identity in identities]
        keys += [self._key("limit", name) for name, _amount, _seconds in windows]
        args = [len(identities), cost]
        for _name, amount, seconds in windows:
            args += [amount, seconds]
        reply = self._call(lambda: self._check(keys=keys, args=args))
        if reply[0]:
            return math.ceil(reply[1] / 1000), None, []

        stats = [
            (int(reply[index]), float(reply[index + 1]))
            for index in range(2, len(reply), 2)
        ]
        exceeded = int(reply[1]) - 1 if reply[1] else None
        return 0, exceeded, stats

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
