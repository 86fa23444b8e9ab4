"""Webhook signatures: what the sender writes and what a receiver checks.

The header reads ``t=<unix time>,v1=<hex>`` where ``<hex>`` is the
HMAC-SHA256, under the endpoint's secret, of ``"<t>.<raw body>"``. While a
secret is being rotated the header carries one ``v1=`` entry per live
secret, newest first. Only the standard library is used, so receivers can
copy this module's one dependency-free function, :func:`verify_signature`.
"""

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "AICrisisAlert-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(ValueError):
    """The signature header is malformed, stale, or matches no secret."""


def _as_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def compute(secret, timestamp, body):
    """Return the hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(int(timestamp)).encode("ascii") + b"." + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_header(live_secrets, body, *, timestamp=None):
    """Return the header value signing ``body`` with each of ``live_secrets``.

    Args:
        live_secrets: the secrets to sign with, newest first (two during a
            rotation's overlap).
        body: the exact bytes that are sent.
        timestamp: unix seconds; now when omitted.
    """
    timestamp = int(time.time() if timestamp is None else timestamp)
    parts = [f"t={timestamp}"]
    parts.extend(
        f"{SCHEME}={compute(secret, timestamp, body)}" for secret in live_secrets
    )
    return ",".join(parts)


def _parse(header):
    timestamp = None
    signatures = []
    for item in (header or "").split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            timestamp = value
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit():
        raise InvalidSignature("the signature header has no valid t= timestamp")
    if not signatures:
        raise InvalidSignature(f"the signature header has no {SCHEME}= signature")
    return int(timestamp), signatures


def verify_signature(
    secret, header, body, tolerance=DEFAULT_TOLERANCE_SECONDS, *, now=None
):
    """Check a delivery's signature header against ``secret``; return its time.

    Use the raw request body, before any JSON parsing: re-encoding changes
    the bytes and breaks the signature.

    Args:
        secret: the endpoint's secret (``whsec_...``).
        header: the ``AICrisisAlert-Signature`` header value.
        body: the raw body, bytes or str.
        tolerance: seconds the timestamp may differ from ``now`` either way;
            older deliveries are refused as possible replays.
        now: unix seconds to compare against; the current time when omitted.

    Returns:
        The signed unix timestamp.

    Raises:
        InvalidSignature: the header is malformed, older or newer than the
            tolerance, or no ``v1`` entry matches.
    """
    timestamp, signatures = _parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(
            f"the signature timestamp is outside the {tolerance}s tolerance"
        )
    expected = compute(secret, timestamp, body)
    # Compare against every entry so timing says nothing about which matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate.strip().lower())
    if not matched:
        raise InvalidSignature("no signature matches the secret")
    return timestamp


def new_secret():
    """Return a fresh endpoint secret: ``whsec_`` and 256 random bits."""
    return "whsec_" + secrets.token_urlsafe(32)
