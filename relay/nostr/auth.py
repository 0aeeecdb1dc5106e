"""NIP-42 authentication: the relay URL a client must name, and the check of its answer.

The relay sends ``["AUTH", <challenge>]`` when a connection opens; the client answers with
``["AUTH", <event>]``, an event of kind 22242 tagged ``["relay", <url>]`` and
``["challenge", <challenge>]``, signed by the key it authenticates as. The challenge comes
from the shell (random per connection), the clock too; this module only decides.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from relay.nostr.errors import NostrError
from relay.nostr.event import Event, decode_event, refuse_duplicate_keys, validate_event
from relay.nostr.limits import Limits
from relay.nostr.verify import verify_signature

__all__ = ["AUTH_KIND", "AuthSettings", "normalise_url", "verify_auth"]

AUTH_KIND = 22242
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


def normalise_url(url: str) -> str:
    """``url`` in one spelling for comparison: scheme and host lowercased, the scheme's
    default port and a trailing slash dropped. Empty when it is not a ws:// or wss:// URL.

    >>> normalise_url("WSS://Relay.Example.com:443/")
    'wss://relay.example.com'
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """What a connection needs to offer AUTH: the relay's public URL (normalised) and how
    far an AUTH event's ``created_at`` may be from now."""

    relay_url: str
    window_seconds: int = 600

    @classmethod
    def of(cls, public_url: str, window_seconds: int) -> AuthSettings:
        return cls(normalise_url(public_url), window_seconds)


def _tag(event: Event, name: str) -> str | None:
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == name:
            return tag[1]
    return None


def verify_auth(
    raw: bytes, challenge: str, settings: AuthSettings, limits: Limits, now: int
) -> Event:
    """The checked AUTH event: shape and id, kind 22242, this connection's challenge, this
    relay's URL, ``created_at`` within the window of ``now``, then the signature.

    Raises:
        NostrError: ``invalid:`` saying which check failed (the client's OK false).
    """
    event = decode_event(raw)
    refuse_duplicate_keys(raw)
    validate_event(event, len(raw), limits, now)
    if event.kind != AUTH_KIND:
        raise NostrError("invalid", f"AUTH takes a kind {AUTH_KIND} event")
    if _tag(event, "challenge") != challenge:
        raise NostrError("invalid", "the challenge tag is not this connection's challenge")
    relay = _tag(event, "relay")
    if relay is None or normalise_url(relay) != settings.relay_url:
        raise NostrError("invalid", f"the relay tag must name {settings.relay_url}")
    if abs(event.created_at - now) > settings.window_seconds:
        raise NostrError(
            "invalid", f"created_at is more than {settings.window_seconds} seconds from now"
        )
    if not verify_signature(event.id, event.pubkey, event.sig):
        raise NostrError("invalid", "bad signature")
    return event
