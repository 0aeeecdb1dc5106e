"""Which address is the client's, behind trusted proxies (no sockets needed)."""

from __future__ import annotations

from websockets.datastructures import Headers

from relay.server.proxies import TrustedProxies

PROXIES = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "::1"])


def client(peer: str, *headers: tuple[str, str]) -> str:
    return PROXIES.client(peer, Headers(list(headers)))


def test_the_right_most_untrusted_hop_is_the_client() -> None:
    xff = ("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.1.2.3")
    assert client("127.0.0.1", xff) == "203.0.113.9"  # 1.1.1.1 may be forged by the client
    assert client("::1", ("X-Forwarded-For", "2001:db8::7")) == "2001:db8::7"
    # several headers are one list, in order
    two = ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "10.0.0.2")
    assert client("127.0.0.1", *two) == "1.1.1.1"


def test_only_trusted_peers_are_believed() -> None:
    xff = ("X-Forwarded-For", "203.0.113.9")
    assert client("192.0.2.1", xff) == "192.0.2.1"
    assert client("192.0.2.1", ("X-Real-IP", "203.0.113.9")) == "192.0.2.1"
    assert TrustedProxies([]).client("127.0.0.1", Headers([xff])) == "127.0.0.1"


def test_x_real_ip_and_odd_headers() -> None:
    assert client("127.0.0.1", ("X-Real-IP", "203.0.113.9")) == "203.0.113.9"
    assert client("127.0.0.1", ("X-Real-IP", "nonsense")) == "127.0.0.1"
    assert client("127.0.0.1") == "127.0.0.1"
    # every hop trusted: the left-most one; garbage stops the walk at the last good hop
    assert client("127.0.0.1", ("X-Forwarded-For", "10.0.0.5, 10.0.0.6")) == "10.0.0.5"
    assert client("127.0.0.1", ("X-Forwarded-For", "junk, 10.0.0.6")) == "10.0.0.6"
    assert client("::ffff:127.0.0.1", ("X-Forwarded-For", "203.0.113.9")) == "203.0.113.9"
