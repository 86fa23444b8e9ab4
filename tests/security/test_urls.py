import ipaddress
import socket

import pytest

from security import urls

# Every form the registration and each attempt must refuse, by default.
BLOCKED = [
    ("http://hooks.example.com/", "must use https"),
    ("ftp://hooks.example.com/", "must use https"),
    ("http://2130706433/", "must use https"),
    ("http://0x7f000001/", "must use https"),
    ("https://2130706433/", "numeric host '2130706433'"),
    ("https://0x7f000001/", "numeric host '0x7f000001'"),
    ("https://0177.0.0.1/", "numeric host '0177.0.0.1'"),
    ("https://127.1/", "numeric host '127.1'"),
    ("https://0x7f.0.0.1/", "numeric host '0x7f.0.0.1'"),
    ("https://0/", "numeric host '0'"),
    ("https://127.0.0.1./", "numeric host '127.0.0.1.'"),
    ("https://127.0.0.1/", r"\(loopback address 127.0.0.1\)"),
    ("https://127.8.9.10:8443/x", r"\(loopback address 127.8.9.10\)"),
    ("https://[::1]/", r"\(loopback address ::1\)"),
    ("https://10.1.2.3/", r"\(private address 10.1.2.3\)"),
    ("https://172.16.0.1/", r"\(private address 172.16.0.1\)"),
    ("https://192.168.0.10/", r"\(private address 192.168.0.10\)"),
    ("https://[fd00::1]/", r"\(private address fd00::1\)"),
    ("https://169.254.169.254/latest/meta-data/", r"\(link-local address"),
    ("https://[fe80::1]/", r"\(link-local address fe80::1\)"),
    ("https://100.64.0.1/", r"\(shared \(CGNAT\) address 100.64.0.1\)"),
    ("https://100.127.255.254/", r"\(shared \(CGNAT\) address"),
    ("https://224.0.0.251/", r"\(multicast address 224.0.0.251\)"),
    ("https://[ff02::1]/", r"\(multicast address ff02::1\)"),
    ("https://240.0.0.1/", r"\(reserved address 240.0.0.1\)"),
    ("https://255.255.255.255/", r"\(reserved address 255.255.255.255\)"),
    ("https://198.18.0.1/", r"\(reserved address 198.18.0.1\)"),
    ("https://192.0.2.1/", r"\(documentation address 192.0.2.1\)"),
    ("https://0.0.0.0/", r"\(unspecified address 0.0.0.0\)"),
    ("https://[::]/", r"\(unspecified address ::\)"),
    ("https://[::ffff:127.0.0.1]/", r"\(IPv4-mapped address ::ffff:7f00:1\)"),
    ("https://[::ffff:a9fe:a9fe]/", r"\(IPv4-mapped address"),
    ("https://[::127.0.0.1]/", r"\(IPv4-compatible address"),
    ("https://[64:ff9b::7f00:1]/", r"\(NAT64 address"),
    ("https://[2002:7f00:1::]/", r"\(6to4 address"),
    ("https://[2001:0:4136:e378::1]/", r"\(Teredo address"),
    ("https://[fe80::1%25eth0]/", "zone identifiers are refused"),
    ("https://user:pass@hooks.example.com/", "credentials in the URL"),
    ("https://hooks.example.com@127.0.0.1/", "credentials in the URL"),
    ("https://hooks.example.com:99999/", "port is not valid"),
    ("https://hooks.example.com:0/", "port is not valid"),
    ("https:///path-only", "no host"),
    ("https://hooks.exa mple.com/", "whitespace"),
    ("https://hooks.example.com\\@127.0.0.1/", "'\\\\'"),
    ("https://%31%32%37.0.0.1/", "numeric host"),
    ("https://bad_host!.example.com/", "is not a valid name"),
    ("https://" + "a" * 2048 + ".com/", "longer than 2048"),
    ("", "empty"),
]


@pytest.mark.parametrize(("url", "message"), BLOCKED)
def test_check_url_refuses_each_unsafe_form(url, message):
    """Each unsafe scheme, host form and address range is refused with its reason."""
    with pytest.raises(urls.UnsafeUrl, match=message):
        urls.check_url(url)


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://hooks.example.com/in?x=1", "hooks.example.com", 443, "/in?x=1"),
        ("https://Hooks.Example.COM:8443", "hooks.example.com", 8443, "/"),
        ("https://8.8.8.8/hook", "8.8.8.8", 443, "/hook"),
        ("https://[2606:4700::1111]/", "2606:4700::1111", 443, "/"),
        ("https://bücher.example/", "xn--bcher-kva.example", 443, "/"),
    ],
)
def test_check_url_accepts_public_https(url, host, port, path):
    """Public https URLs pass, split into host, port and request path."""
    target = urls.check_url(url)

    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        host,
        port,
        path,
    )


def test_allow_private_permits_http_loopback_and_private_only():
    """The development switch lets 127.0.0.1 and RFC 1918 through, nothing else."""
    assert urls.check_url("http://127.0.0.1:5000/x", allow_private=True).port == 5000
    assert urls.check_url("https://10.0.0.8/", allow_private=True).host == "10.0.0.8"
    for url, message in [
        ("http://169.254.169.254/", "link-local"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://0x7f000001/", "numeric host"),
        ("http://2130706433/", "numeric host"),
        ("http://0.0.0.0/", "unspecified"),
    ]:
        with pytest.raises(urls.UnsafeUrl, match=message):
            urls.check_url(url, allow_private=True)


def test_resolve_refuses_a_name_that_resolves_to_loopback():
    """'localhost' passes the form check but its real lookup is refused."""
    target = urls.check_url("https://localhost:8443/hook")

    with pytest.raises(urls.UnsafeUrl, match="'localhost' resolves to a refused"):
        urls.resolve(target)
    assert ipaddress.ip_address("127.0.0.1") in urls.resolve(target, allow_private=True)


def _answers(*addresses):
    """getaddrinfo-shaped answers. DNS stand-in: no resolver serves test names."""

    def getaddrinfo(host, port, type=None):  # noqa: A002  (socket's signature)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port))
            for a in addresses
        ]

    return getaddrinfo


def test_resolve_refuses_the_whole_name_when_any_answer_is_internal():
    """One internal address among public ones refuses the name (rebinding)."""
    target = urls.check_url("https://hooks.example.com/")

    with pytest.raises(urls.UnsafeUrl, match=r"link-local address 169.254.169.254"):
        urls.resolve(target, getaddrinfo=_answers("8.8.8.8", "169.254.169.254"))
    assert urls.resolve(target, getaddrinfo=_answers("8.8.8.8", "8.8.8.8")) == [
        ipaddress.ip_address("8.8.8.8")
    ]


def test_resolve_fails_for_a_name_that_does_not_exist():
    """An unknown name raises gaierror (retried later), not UnsafeUrl."""
    target = urls.check_url("https://no-such-host.invalid/")

    with pytest.raises(socket.gaierror):
        urls.resolve(target)
