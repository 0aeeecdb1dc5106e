"""The configured write and read rules: kinds and pubkeys allowed or denied, AUTH required
for writes, reads or listed kinds, and NIP-13 proof of work.

A :class:`Rules` value is built by the composition root from ``[policy]`` and ``[auth]``
and turned into :class:`~relay.nostr.policy.Policies` (hooks, NIP-11 ``limitation`` and
``retention``) by :meth:`Rules.policies`. Each refusal carries its NIP-01 prefix:
``blocked:`` for a deny list, ``restricted:`` for what an allow list leaves out,
``auth-required:`` until the client authenticates, ``pow:`` for too little work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType

from relay.nostr.errors import NostrError
from relay.nostr.event import MAX_KIND, Event
from relay.nostr.filters import Filter
from relay.nostr.policy import ConnInfo, Policies

__all__ = ["Rules", "committed_target", "difficulty", "kind_ranges"]


def difficulty(event_id: str) -> int:
    """NIP-13 difficulty: the number of leading zero bits of the 256-bit id."""
    return 256 - int(event_id, 16).bit_length()


def committed_target(event: Event) -> int | None:
    """The target difficulty a ``["nonce", n, target]`` tag commits to, when it has one."""
    for tag in event.tags:
        if len(tag) >= 3 and tag[0] == "nonce":
            value = tag[2]
            return int(value) if value.isascii() and value.isdigit() and len(value) < 4 else None
    return None


def kind_ranges(kinds: Iterable[int]) -> list[int | list[int]]:
    """Kinds as NIP-11 ``retention`` writes them: single kinds, runs as ``[first, last]``."""
    out: list[int | list[int]] = []
    run: list[int] = []
    for kind in sorted(set(kinds)):
        if run and kind == run[-1] + 1:
            run[-1] = kind
            continue
        if run:
            out.append(run[0] if run[0] == run[1] else run)
        run = [kind, kind]
    if run:
        out.append(run[0] if run[0] == run[1] else run)
    return out


def _kinds_text(kinds: frozenset[int]) -> str:
    return ", ".join(map(str, sorted(kinds)))


@dataclass(frozen=True, slots=True)
class Rules:
    """Who may write what and who may read, as configured. Empty means open."""

    kinds_allow: frozenset[int] | None = None
    """Only these kinds are accepted; None accepts every kind."""
    kinds_deny: frozenset[int] = frozenset()
    pubkeys_allow: frozenset[str] | None = None
    """Only these authors may publish (and, when reads need AUTH, read); None: anyone."""
    pubkeys_deny: frozenset[str] = frozenset()
    min_pow_difficulty: int = 0
    auth_writes: bool = False
    """An event is accepted only from a connection authenticated as its author."""
    auth_reads: bool = False
    """REQ and COUNT need an authenticated connection."""
    auth_kinds: frozenset[int] = frozenset()
    """Writing these kinds, and reading what could match them, needs AUTH."""

    @property
    def restricts_writes(self) -> bool:
        return bool(
            self.kinds_allow is not None
            or self.kinds_deny
            or self.pubkeys_allow is not None
            or self.pubkeys_deny
            or self.min_pow_difficulty
            or self.auth_writes
            or self.auth_kinds
        )

    @property
    def restricts_reads(self) -> bool:
        return self.auth_reads or bool(self.auth_kinds)

    def refuse_event(self, conn: ConnInfo, event: Event, now: int) -> NostrError | None:
        """Why ``event`` may not be written: deny lists, allow lists, AUTH, then work."""
        if event.pubkey in self.pubkeys_deny:
            return NostrError("blocked", "this pubkey may not publish here")
        if event.kind in self.kinds_deny:
            return NostrError("blocked", f"kind {event.kind} is not accepted by this relay")
        if self.pubkeys_allow is not None and event.pubkey not in self.pubkeys_allow:
            return NostrError("restricted", "this relay accepts events only from its members")
        if self.kinds_allow is not None and event.kind not in self.kinds_allow:
            return NostrError("restricted", f"kind {event.kind} is not accepted by this relay")
        if (self.auth_writes or event.kind in self.auth_kinds) and (
            event.pubkey not in conn.authed
        ):
            if not conn.authed:
                return NostrError("auth-required", "authenticate (NIP-42) to publish this event")
            return NostrError(
                "restricted", "events are accepted only from a pubkey this connection authed as"
            )
        return self._refuse_work(event)

    def _refuse_work(self, event: Event) -> NostrError | None:
        required = self.min_pow_difficulty
        if not required:
            return None
        target = committed_target(event)
        if target is not None and target < required:
            return NostrError(
                "pow", f"the nonce tag commits to difficulty {target}; {required} is required"
            )
        done = difficulty(event.id)
        if done < required:
            return NostrError("pow", f"difficulty {done} is less than {required}")
        return None

    def refuse_filters(
        self, conn: ConnInfo, filters: tuple[Filter, ...], now: int
    ) -> NostrError | None:
        """Why this REQ or COUNT may not run: AUTH for every read, or for any filter that
        could match an AUTH-only kind (a filter without ``kinds`` could)."""
        if self.auth_reads:
            if not conn.authed:
                return NostrError("auth-required", "authenticate (NIP-42) to read from this relay")
            if self.pubkeys_allow is not None and not conn.authed & self.pubkeys_allow:
                return NostrError("restricted", "this relay is read only by its members")
        if self.auth_kinds and not conn.authed:
            for f in filters:
                if f.kinds is None or f.kinds & self.auth_kinds:
                    return NostrError(
                        "auth-required",
                        f"authenticate (NIP-42) to read kinds {_kinds_text(self.auth_kinds)}",
                    )
        return None

    def policies(self) -> Policies:
        """These rules as policy hooks, with what NIP-11 should say of them."""
        retention: list[dict[str, object]] = []
        never: set[int] = set(self.kinds_deny)
        if self.kinds_allow is not None:
            never |= set(range(MAX_KIND + 1)) - self.kinds_allow
        if never:
            retention.append({"kinds": kind_ranges(never), "time": 0})
        return Policies(
            reject_event=(self.refuse_event,) if self.restricts_writes else (),
            reject_filters=(self.refuse_filters,) if self.restricts_reads else (),
            limitation=MappingProxyType(
                {
                    "auth_required": self.auth_reads,
                    "restricted_writes": self.restricts_writes,
                    "min_pow_difficulty": self.min_pow_difficulty,
                }
            ),
            retention=tuple(MappingProxyType(entry) for entry in retention),
        )
