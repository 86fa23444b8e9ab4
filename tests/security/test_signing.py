import hashlib
import hmac

import pytest

from app.client import verify_signature
from security import signing

SECRET = "whsec_test-secret"
BODY = b'{"id":"e1","type":"classification.succeeded","created":"x","data":{}}'
NOW = 1_700_000_000


def test_signature_header_is_hmac_sha256_of_timestamp_dot_body():
    """The v1 value is hex HMAC-SHA256 of "<t>.<raw body>" under the secret."""
    header = signing.signature_header([SECRET], BODY, timestamp=NOW)

    expected = hmac.new(
        SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256
    ).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_verify_accepts_a_fresh_signature_and_returns_its_time():
    """A header made now for this body and secret verifies."""
    header = signing.signature_header([SECRET], BODY, timestamp=NOW)

    assert verify_signature(SECRET, header, BODY, now=NOW + 10) == NOW
    assert verify_signature(SECRET, header, BODY.decode(), now=NOW) == NOW


@pytest.mark.parametrize(
    ("secret", "body", "message"),
    [
        ("whsec_other", BODY, "no signature matches"),
        (SECRET, BODY.replace(b"e1", b"e2"), "no signature matches"),
        (SECRET, BODY + b" ", "no signature matches"),
    ],
)
def test_verify_refuses_a_wrong_secret_or_altered_body(secret, body, message):
    """Another secret, or a single changed byte, fails verification."""
    header = signing.signature_header([SECRET], BODY, timestamp=NOW)

    with pytest.raises(signing.InvalidSignature, match=message):
        verify_signature(secret, header, body, now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 3600])
def test_verify_refuses_timestamps_outside_the_tolerance(offset):
    """Older (a replay) or newer than 300 s by default is refused."""
    header = signing.signature_header([SECRET], BODY, timestamp=NOW)

    with pytest.raises(signing.InvalidSignature, match="outside the 300s tolerance"):
        verify_signature(SECRET, header, BODY, now=NOW + offset)


def test_verify_tolerance_is_adjustable():
    """A receiver may widen or narrow the window."""
    header = signing.signature_header([SECRET], BODY, timestamp=NOW)

    assert verify_signature(SECRET, header, BODY, tolerance=4000, now=NOW + 3600)
    with pytest.raises(signing.InvalidSignature, match="outside the 5s tolerance"):
        verify_signature(SECRET, header, BODY, tolerance=5, now=NOW + 6)


def test_header_during_rotation_carries_both_and_each_secret_verifies():
    """Two secrets give two v1 entries; either secret verifies on its own."""
    header = signing.signature_header(["whsec_new", "whsec_old"], BODY, timestamp=NOW)

    assert header.count("v1=") == 2
    assert verify_signature("whsec_new", header, BODY, now=NOW) == NOW
    assert verify_signature("whsec_old", header, BODY, now=NOW) == NOW
    with pytest.raises(signing.InvalidSignature, match="no signature matches"):
        verify_signature("whsec_third", header, BODY, now=NOW)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("", "no valid t= timestamp"),
        ("v1=abc", "no valid t= timestamp"),
        ("t=soon,v1=abc", "no valid t= timestamp"),
        (f"t={NOW}", "no v1= signature"),
        (f"t={NOW},v0=abc", "no v1= signature"),
        (None, "no valid t= timestamp"),
    ],
)
def test_verify_refuses_malformed_headers(header, message):
    """Headers without a numeric t= or any v1= entry are refused."""
    with pytest.raises(signing.InvalidSignature, match=message):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_new_secrets_are_prefixed_and_distinct():
    """Secrets carry the whsec_ prefix and 256 random bits."""
    made = {signing.new_secret() for _ in range(50)}

    assert len(made) == 50
    assert all(s.startswith("whsec_") and len(s) == 6 + 43 for s in made)
