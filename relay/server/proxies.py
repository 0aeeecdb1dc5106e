"""The client's address behind trusted reverse proxies.

A peer in ``relay.trusted_proxies`` speaks for its client: the client is the right-most hop
of ``X-Forwarded-For`` that is not itself a trusted proxy (each proxy appends the address it
was connected from, so hops left of an untrusted one may be forged), else ``X-Real-IP``.
From any other peer these headers are ignored: the peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from websockets.datastructures import Headers

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The configured proxy networks, parsed once."""

    def __init__(self, cidrs: Sequence[str]) -> None:
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in cidrs
        )

    def trusts(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str, headers: Headers) -> str:
        """The client's address for a connection from ``peer`` with these request headers."""
        peer_address = _address(peer)
        if peer_address is None or not self.networks or not self.trusts(peer_address):
            return peer
        client = peer_address
        hops = [hop for value in headers.get_all("X-Forwarded-For") for hop in value.split(",")]
        if hops:
            for hop in reversed(hops):
                address = _address(hop)
                if address is None:
                    break  # garbage: the last hop a trusted proxy vouched for is the client
                client = address
                if not self.trusts(address):
                    break
            return str(client)
        real = _address(headers.get("X-Real-IP", ""))
        return str(real if real is not None else client)
