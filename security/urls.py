"""Where webhooks may go: URL and address checks against SSRF.

A webhook URL is checked twice: when it is registered (by its form, and by
what its name resolves to right then) and again before each attempt, after
resolving the name, so that a name re-pointed at an internal address later
is caught. The delivery then connects to one of the addresses that passed,
never to a second lookup's answer.

Refused by default: schemes other than ``https``; credentials in the URL;
host names that are numbers in any form other than a dotted quad
(``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``); and addresses
that are loopback, private, link-local, shared (CGNAT), multicast,
reserved, documentation, unspecified, or IPv6 forms that embed an IPv4
address (mapped, compatible, NAT64, 6to4, Teredo). ``allow_private``
(development and tests only) permits ``http`` and the loopback and private
ranges, nothing else.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048

# (network, reason); the first match names why an address is refused.
_BLOCKED_NETWORKS = [
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "NAT64"),
        ("100::/64", "reserved"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "link-local"),
        ("ff00::/8", "multicast"),
    )
]
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
# What allow_private lets through: a developer's own machine and LAN.
_PRIVATE_REASONS = frozenset({"loopback", "private"})

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_DOTTED_QUAD_PART = re.compile(r"^(0|[1-9][0-9]{0,2})$")
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class UnsafeUrl(ValueError):
    """The URL or an address it resolves to may not receive webhooks."""


@dataclass(frozen=True)
class Target:
    """A checked URL, split into what the connection needs."""

    scheme: str
    host: str
    port: int
    path: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def is_literal(self):
        """Whether the host is an IP address rather than a name."""
        return self.address is not None


def address_problem(address, *, allow_private=False):
    """Return why ``address`` is refused, or None when it may be used."""
    address = ipaddress.ip_address(address)
    for network, reason in _BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            if allow_private and reason in _PRIVATE_REASONS:
                return None
            return f"{reason} address {address}"
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return f"reserved address {address}"
    if not address.is_global:
        return f"reserved address {address}"
    return None


def _numeric_host(host):
    """Return an address for a dotted-quad host, None for a name; else raise."""
    labels = host.split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    canonical = len(labels) == 4 and all(_DOTTED_QUAD_PART.match(p) for p in labels)
    if not canonical or any(int(p) > 255 for p in labels):
        raise UnsafeUrl(
            f"numeric host '{host}' is refused: write an IPv4 address as a "
            "dotted quad of decimal numbers"
        )
    return ipaddress.IPv4Address(host)


def _checked_host(hostname):
    """Return ``(host, address or None)`` for the URL's host; raise if unsafe."""
    if hostname.startswith("[") or ":" in hostname:
        literal = hostname.strip("[]")
        if "%" in literal:
            raise UnsafeUrl("IPv6 zone identifiers are refused")
        try:
            return literal, ipaddress.IPv6Address(literal)
        except ValueError:
            raise UnsafeUrl(f"'{hostname}' is not a valid IPv6 address") from None

    try:
        host = hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeUrl(f"host '{hostname}' is not a valid name") from None
    if host.endswith("."):
        if _NUMERIC_LABEL.match(host.rstrip(".").split(".")[-1]):
            raise UnsafeUrl(f"numeric host '{hostname}' is refused")
        host = host[:-1]
    if not host or len(host) > 253:
        raise UnsafeUrl("the URL has no valid host")
    address = _numeric_host(host)
    if address is None and not all(_HOST_LABEL.match(p) for p in host.split(".")):
        raise UnsafeUrl(f"host '{hostname}' is not a valid name")
    return host, address


def check_url(url, *, allow_private=False):
    """Check ``url`` by its form alone (no name lookup); return its Target.

    Raises:
        UnsafeUrl: naming the first reason the URL is refused.
    """
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("the URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in url):
        raise UnsafeUrl("the URL contains whitespace, control characters or '\\'")

    parts = urlsplit(url)
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in allowed:
        raise UnsafeUrl(f"the URL must use {' or '.join(allowed)}")
    if "@" in parts.netloc:
        raise UnsafeUrl("credentials in the URL are refused")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeUrl("the URL's port is not valid") from None
    scheme = parts.scheme.lower()
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise UnsafeUrl("the URL's port is not valid")

    # urlsplit lowercases and drops the brackets of an IPv6 literal.
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    host, address = _checked_host(
        f"[{parts.hostname}]" if netloc_host.startswith("[") else parts.hostname
    )
    if address is not None:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise UnsafeUrl(f"the URL's address is refused ({problem})")

    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, address=address)


def resolve(target, *, allow_private=False, getaddrinfo=socket.getaddrinfo):
    """Resolve ``target``'s host and check every address; return them in order.

    A name with one refused address among several is refused whole: a
    resolver that mixes answers must not get to pick the internal one.

    Raises:
        UnsafeUrl: an address the name resolves to is refused.
        OSError: the name does not resolve (``socket.gaierror``).
    """
    if target.is_literal:
        return [target.address]

    answers = getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    addresses = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise UnsafeUrl(
                f"'{target.host}' resolves to a refused address ({problem})"
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(f"'{target.host}' resolved to no address")
    return addresses
