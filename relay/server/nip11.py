"""NIP-11: the relay information document, served on the WebSocket port over plain HTTP."""

from __future__ import annotations

import http
from collections.abc import Callable

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay import __version__
from relay.config import Config
from relay.nostr.filters import DEFAULT_RULES, FilterRules
from relay.nostr.policy import DEFAULT_POLICIES, Policies

__all__ = ["SUPPORTED_NIPS", "information_document", "make_process_request"]

SUPPORTED_NIPS = [1, 9, 11, 40, 45, 70, 77]

_CORS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Headers", "*"),
    ("Access-Control-Allow-Methods", "GET"),
]


def information_document(
    config: Config, policies: Policies = DEFAULT_POLICIES, rules: FilterRules = DEFAULT_RULES
) -> dict[str, object]:
    """The NIP-11 document; ``limitation`` reports exactly the limits the relay enforces:
    those of ``[relay.limits]`` and what the policies in force imply. ``supported_nips``
    lists 50 when ``rules`` answer search filters."""
    info = config.relay.info
    limits = config.relay.limits
    limitation: dict[str, object] = {
        "max_message_length": limits.max_message_bytes,
        "max_subscriptions": limits.max_subscriptions,
        "max_limit": limits.max_limit,
        "default_limit": limits.default_limit,
        "max_subid_length": limits.max_subid_length,
        "max_event_tags": limits.max_event_tags,
        "max_content_length": limits.max_content_bytes,
        "min_pow_difficulty": 0,
        "auth_required": False,
        "payment_required": False,
        "restricted_writes": False,
        "created_at_upper_limit": limits.created_at_future_seconds,
        # Not in NIP-11's list, reported so clients can see every enforced limit:
        "max_filters": limits.max_filters,
        "max_queries_in_flight": limits.max_queries_in_flight,
        "max_filter_values": limits.max_filter_values,
        "max_event_bytes": limits.max_event_bytes,
        "max_tag_value_bytes": limits.max_tag_value_bytes,
        "max_negentropy_records": limits.max_negentropy_records,
        "max_negentropy_sessions": limits.max_negentropy_sessions,
        "negentropy_idle_seconds": limits.negentropy_idle_seconds,
        "negentropy_frame_bytes": limits.negentropy_frame_bytes,
    }
    if limits.created_at_past_seconds:
        limitation["created_at_lower_limit"] = limits.created_at_past_seconds
    limitation.update(policies.limitation)
    nips = list(SUPPORTED_NIPS)
    if config.policy.min_pow_difficulty:
        nips.append(13)  # proof of work required
    if config.relay.public_url:
        nips.append(42)  # AUTH offered
    if rules.search_kinds is not None:
        nips.append(50)  # search filters answered
    document: dict[str, object] = {
        "name": info.name,
        "description": info.description,
        "supported_nips": sorted(nips),
        "software": "fitrelay",
        "version": __version__,
        "limitation": limitation,
    }
    if policies.retention:
        document["retention"] = [dict(entry) for entry in policies.retention]
    for key in ("pubkey", "contact", "icon"):
        value = getattr(info, key)
        if value:
            document[key] = value
    return document


def _response(status: http.HTTPStatus, content_type: str, body: bytes) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    for name, value in _CORS:
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def make_process_request(
    config: Config, policies: Policies = DEFAULT_POLICIES, rules: FilterRules = DEFAULT_RULES
) -> Callable[[ServerConnection, Request], Response | None]:
    """A websockets ``process_request`` hook: NIP-11 and a plain page for non-upgrade GETs."""
    body = msgspec.json.encode(information_document(config, policies, rules))
    page = (
        f"{config.relay.info.name}: a Nostr relay. Connect with a Nostr client over WebSocket;"
        " send Accept: application/nostr+json for the NIP-11 document.\n"
    ).encode()

    def process_request(_conn: ServerConnection, request: Request) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        if "application/nostr+json" in request.headers.get("Accept", ""):
            return _response(http.HTTPStatus.OK, "application/nostr+json", body)
        return _response(http.HTTPStatus.OK, "text/plain; charset=utf-8", page)

    return process_request
