"""API key material: generation, keyed hashing and constant-time checks.

A key reads ``aca_<prefix>_<secret>``. The prefix is public: it names the
key in logs and lists and finds its row. Only the HMAC-SHA256 of the whole
key under a server-side pepper is stored.
"""

import hashlib
import hmac
import re
import secrets

KEY_SCHEME = "aca"
_PREFIX_BYTES = 5
_SECRET_BYTES = 32
_KEY_RE = re.compile(r"^aca_([a-z0-9]{8,16})_([A-Za-z0-9_-]{32,128})$")


def generate(prefix=None):
    """Return ``(key, prefix)`` for a new random key (a new secret for ``prefix``)."""
    prefix = prefix or secrets.token_hex(_PREFIX_BYTES)[:8]
    return f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}", prefix


def hash_key(key, pepper):
    """Return the hex HMAC-SHA256 of ``key`` (text or bytes) under ``pepper``."""
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    return hmac.new(pepper.encode("utf-8"), key, hashlib.sha256).hexdigest()


def parse_prefix(key):
    """Return the prefix of a well-formed key, or None."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def matches(key, stored_hash, pepper):
    """Compare a presented key with a stored hash, bytes against bytes."""
    return matching_hash(key, [stored_hash], pepper) == 0


def matching_hash(key, stored_hashes, pepper):
    """Return the index of the stored hash ``key`` matches, or None.

    Every candidate is compared in constant time, with no early exit, so
    the time taken says nothing about which (if any) matched. A ``None``
    candidate (no previous secret) never matches.
    """
    presented = hash_key(key, pepper).encode("ascii")
    found = None
    for index, stored in enumerate(stored_hashes):
        candidate = (stored or "").encode("ascii").ljust(len(presented), b"\0")
        if hmac.compare_digest(presented, candidate) and stored:
            found = index if found is None else found
    return found
