"""Where to look for a missing address, and when to look again: the fetcher's pure core.

An address ``kind:pubkey:d`` is asked for with the filter
``{"kinds":[kind],"authors":[pubkey],"#d":[d]}``. Its routes are tried in order: the relay
hints of the references that name it, the author's NIP-65 write relays, then the configured
upstreams, each relay once. A URL is usable only when :class:`UrlRules` allow it: ws or wss,
no credentials, and no loopback, private or link-local address unless loopback is allowed.
No I/O here: the shell (:mod:`relay.fetcher`) does the sockets and the clock.
"""

from __future__ import annotations

import ipaddress
import random
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = ["Address", "UrlRules", "Wanted", "address_filter", "matches", "retry_delay",
           "routes", "write_relays"]  # fmt: skip

_dec = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Address:
    kind: int
    pubkey: str
    d: str
    hints: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.pubkey}:{self.d}"


@dataclass(slots=True)
class Wanted:
    """One address being asked of its routes, in order, and what the asking found."""

    address: Address
    routes: list[str]
    attempts: int = 0
    """Earlier rounds' tries (of a missing address)."""
    tried: int = 0
    """Routes used up this round."""
    errors: int = 0
    answered: int = 0
    reason: str | None = None
    last: str | None = None
    found_at: str | None = None
    """The relay whose version is stored here now (newly, or as a duplicate or an older one)."""
    stored: bool = False
    """Whether that version was newly stored (not one this database already had)."""


def address_filter(address: Address) -> dict[str, Any]:
    """The REQ filter that asks for ``address`` (its newest version). A replaceable kind
    (0, 3, 10000-19999: d is empty) carries no d tag, so it is asked for without ``#d``."""
    flt: dict[str, Any] = {"kinds": [address.kind], "authors": [address.pubkey], "limit": 1}
    if 30_000 <= address.kind < 40_000:
        flt["#d"] = [address.d]
    return flt


def matches(event: Any, address: Address) -> bool:
    """Whether a decoded event is (a version of) ``address``: its kind, author and first d."""
    if not isinstance(event, dict):
        return False
    if event.get("kind") != address.kind or event.get("pubkey") != address.pubkey:
        return False
    tags = event.get("tags")
    if not isinstance(tags, list):
        return False
    for tag in tags:
        if isinstance(tag, list) and len(tag) >= 1 and tag[0] == "d":
            return len(tag) >= 2 and tag[1] == address.d
    return address.d == ""


@dataclass(frozen=True, slots=True)
class UrlRules:
    allow_loopback: bool = False

    def normalise(self, url: str) -> str | None:
        """``url`` as the fetcher would dial it, or None when it must not be dialled."""
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            return None
        if parts.username or parts.password:
            return None
        host = parts.hostname.lower()
        if not self.allow_loopback and _local(host):
            return None
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        path = parts.path.rstrip("/")
        return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or ("." not in host and ":" not in host):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith((".local", ".internal"))
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


def write_relays(raw: str) -> list[str]:
    """The write relays of a NIP-65 relay list (kind 10002): ``r`` tags marked ``write`` or
    unmarked, in their order."""
    try:
        event = _dec.decode(raw)
    except msgspec.DecodeError:
        return []
    tags = event.get("tags") if isinstance(event, dict) else None
    found: list[str] = []
    for tag in tags if isinstance(tags, list) else ():
        if not isinstance(tag, list) or len(tag) < 2 or tag[0] != "r":
            continue
        if not isinstance(tag[1], str):
            continue
        marker = tag[2] if len(tag) > 2 else ""
        if marker in ("", "write"):
            found.append(tag[1])
    return found


def routes(
    hints: Iterable[str],
    relay_list: Iterable[str],
    upstreams: Sequence[str],
    rules: UrlRules,
) -> list[str]:
    """The relays to ask, in order: usable hints, usable write relays, then the configured
    upstreams (trusted as configured), each once."""
    seen: dict[str, None] = {}
    for url in (*hints, *relay_list):
        usable = rules.normalise(url)
        if usable is not None:
            seen.setdefault(usable, None)
    for url in upstreams:
        seen.setdefault(url, None)
    return list(seen)


def retry_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before try ``attempts + 1``: ``base * 2**(attempts - 1)`` capped at ``cap``,
    with full jitter on its upper half (so retries of many addresses spread out)."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return float(delay / 2 + rng.random() * delay / 2)
