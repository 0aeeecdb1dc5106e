"""NIP-51 sets 30003/30004 (spec §7): powr_web libraries and POWR Packs."""

from __future__ import annotations

from indexer.collection import parse_list
from indexer.model import Address, FitnessList, Issue, ListItem
from relay.nostr.event import Event

AUTHOR = "55127fc9e1c03c6b459a3bab72fdb99def1644c5f239bdd09f3e5fb401ed9b21"
PK = "9947f9659dd80c3682402b612f5447e28249997fb3709500c32a585eb0977340"
EVENT_ID = "b" * 64


def list_event(kind: int, tags: list[list[str]], content: str = "") -> Event:
    return Event(
        id=EVENT_ID,
        pubkey=AUTHOR,
        created_at=1740000000,
        kind=kind,
        tags=tags,
        content=content,
        sig="0" * 128,
    )


def test_powr_web_library_30003() -> None:
    event = list_event(
        30003,
        [
            ["d", "powr-exercise-list"],
            ["title", "POWR Exercise List"],
            ["description", "Exercises saved to my library"],
            ["a", f"33401:{PK}:push-up"],
            ["a", f"33401:{PK}:plank"],
            ["a", f"30003:{AUTHOR}:powr-collection-list"],
            ["t", "fitness"],
        ],
    )
    assert parse_list(event) == (
        FitnessList(
            kind=30003,
            pubkey=AUTHOR,
            d="powr-exercise-list",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="POWR Exercise List",
            description="Exercises saved to my library",
            items=(
                ListItem(0, Address(f"33401:{PK}:push-up", 33401, PK, "push-up")),
                ListItem(1, Address(f"33401:{PK}:plank", 33401, PK, "plank")),
                ListItem(
                    2,
                    Address(
                        f"30003:{AUTHOR}:powr-collection-list",
                        30003,
                        AUTHOR,
                        "powr-collection-list",
                    ),
                ),
            ),
        ),
        [],
    )


def test_powr_pack_30004_name_about_and_relay_hints() -> None:
    event = list_event(
        30004,
        [
            ["d", "powr-pack-starter"],
            ["name", "Starter Pack"],
            ["about", "Three workouts to begin with"],
            ["a", f"33402:{PK}:full-body", "wss://relay.powr.me"],
            ["a", f"33401:{PK}:squat", ""],
            ["a", "33401:local:bad"],
            ["r", "https://powr.me"],
        ],
        "ignored when about is present",
    )
    assert parse_list(event) == (
        FitnessList(
            kind=30004,
            pubkey=AUTHOR,
            d="powr-pack-starter",
            event_id=EVENT_ID,
            created_at=1740000000,
            title="Starter Pack",
            description="Three workouts to begin with",
            items=(
                ListItem(
                    0,
                    Address(f"33402:{PK}:full-body", 33402, PK, "full-body", "wss://relay.powr.me"),
                ),
                ListItem(1, Address(f"33401:{PK}:squat", 33401, PK, "squat", None)),
                ListItem(2, Address("33401:local:bad", 33401, None, "bad", None)),
            ),
        ),
        [Issue("malformed_coordinate", "'33401:local:bad'", 5)],
    )


def test_description_falls_back_to_content_and_blank_is_none() -> None:
    tags = [["d", "p"], ["a", f"33402:{PK}:x"]]
    row, _ = parse_list(list_event(30004, tags, "Pack description in content"))
    assert row is not None
    assert (row.title, row.description) == (None, "Pack description in content")
    row, _ = parse_list(list_event(30004, [*tags, ["description", "  "]], "   "))
    assert row is not None and row.description is None


def test_not_a_fitness_list() -> None:
    event = list_event(30003, [["d", "reads"], ["a", f"30023:{PK}:article"], ["e", "c" * 64]])
    assert parse_list(event) == (None, [])
    assert parse_list(list_event(30003, [["d", "empty"]])) == (None, [])


def test_missing_d_indexes_under_empty_d() -> None:
    row, issues = parse_list(list_event(30003, [["a", f"33401:{PK}:x"]]))
    assert row is not None and row.d == ""
    assert issues == [Issue("missing_d", "no d tag; indexed under d ''")]
