"""The NIP-50 matcher in plain Python: words, extensions, trigrams, documents, filters."""

from __future__ import annotations

import pytest

from relay.nostr.errors import NostrError
from relay.nostr.event import decode_event
from relay.nostr.filters import FITNESS_TAG_NAMES, FilterRules, matches, parse_filter
from relay.nostr.limits import Limits
from relay.nostr.replies import Closed
from relay.nostr.search import (
    DEFAULT_SEARCH_KINDS,
    MAX_QUERY_WORDS,
    close,
    document_of,
    matches_document,
    parse_search,
    trigrams,
    word_matches,
    words_of,
)
from relay.nostr.session import Session, Subscribe
from tests.signer import Keys, dumps

RULES = FilterRules(tag_names=FITNESS_TAG_NAMES, search_kinds=DEFAULT_SEARCH_KINDS)
KEYS = Keys(3)


def test_words_are_lowercased_alphanumeric_runs() -> None:
    assert words_of("Barbell Bench-Press (3x5), Müller_Row!") == [
        "barbell", "bench", "press", "3x5", "müller", "row",
    ]  # fmt: skip
    assert words_of("x" * 65 + " ok") == ["ok"]


def test_extensions_are_ignored() -> None:
    query = parse_search("bench press language:en include:spam nsfw:false", DEFAULT_SEARCH_KINDS)
    assert query.words == ("bench", "press")
    assert parse_search("domain:example.com", DEFAULT_SEARCH_KINDS).words == ()


@pytest.mark.parametrize(
    "value", [5, None, ["bench"], "x" * 1025, " ".join(f"w{i}" for i in range(MAX_QUERY_WORDS + 1))]
)
def test_bad_search_values_are_invalid(value: object) -> None:
    with pytest.raises(NostrError) as raised:
        parse_search(value, DEFAULT_SEARCH_KINDS)
    assert raised.value.prefix == "invalid"


def test_trigrams_are_pg_trgm_s() -> None:
    # show_trgm('press') and show_trgm('a') in PostgreSQL.
    assert trigrams("press") == {"  p", " pr", "pre", "res", "ess", "ss "}
    assert trigrams("a") == {"  a", " a "}


def test_prefixes_and_typos_match() -> None:
    assert word_matches("pres", "press")
    assert word_matches("bentch", "bench")  # 4 common of 9
    assert close("bench", "benhc")  # 3 of 9, pg_trgm's similarity 0.33333334
    assert not close("squat", "sqaut")  # 2 of 10, similarity 0.2
    assert word_matches("press", "pres")  # 5 common of 7: a typo, not a prefix
    assert not word_matches("press", "row")
    assert not word_matches("müler", "müller")  # trigrams only between ASCII words
    assert word_matches("mül", "müller")
    assert matches_document([], [])
    assert matches_document(["bench", "pres"], ["barbell", "bench", "press"])
    assert not matches_document(["bench", "row"], ["barbell", "bench", "press"])


def test_document_of_an_exercise() -> None:
    raw = dumps(KEYS.sign(33401, "Keep the bar over mid-foot.", [
        ["d", "squat"], ["title", "Back Squat"], ["equipment", "barbell"], ["t", "legs"],
        ["format", "weight", "reps"], ["exercise", "ignored"],
    ]))  # fmt: skip
    document = document_of(decode_event(raw.encode()))
    assert document.title == "back squat"
    assert document.words == (
        "back", "squat", "barbell", "legs", "keep", "the", "bar", "over", "mid", "foot",
    )  # fmt: skip
    # Title words weigh A, tag words B, content words D (no letter) for ts_rank.
    assert document.vector().split() == [
        "'back':1A", "'squat':2A", "'barbell':3B", "'legs':4B", "'keep':5", "'the':6",
        "'bar':7", "'over':8", "'mid':9", "'foot':10",
    ]  # fmt: skip


def test_filters_with_search_and_fitness_tags() -> None:
    exercise = decode_event(dumps(KEYS.sign(33401, "", [
        ["d", "bp"], ["title", "Barbell Bench Press"],
    ])).encode())  # fmt: skip
    note = decode_event(dumps(KEYS.sign(1, "bench press day", [])).encode())
    flt = parse_filter({"search": "bench pres"}, Limits(), RULES)
    assert matches(flt, exercise)
    assert not matches(flt, note)  # kind 1 has no search document here
    assert not matches(parse_filter({"search": "row"}, Limits(), RULES), exercise)
    coord = f"33401:{KEYS.pubkey}:bp"
    record = decode_event(dumps(KEYS.sign(1301, "", [["exercise", coord, "", "80", "5"]])).encode())
    assert matches(parse_filter({"#exercise": [coord]}, Limits(), RULES), record)
    assert not matches(parse_filter({"#template": [coord]}, Limits(), RULES), record)


def test_session_refuses_what_it_cannot_answer() -> None:
    session = Session(Limits(), rules=RULES)
    assert isinstance(session.receive('["REQ", "a", {"search": "squat"}]', 0)[0], Subscribe)
    assert isinstance(session.receive('["REQ", "b", {"#exercise": ["x"]}]', 0)[0], Subscribe)
    refused = session.receive('["REQ", "c", {"#colour": ["red"]}]', 0)[0]
    assert isinstance(refused, Closed)
    assert str(refused.error).startswith("unsupported: tag filter '#colour': only single-letter")
    off = Session(Limits(), rules=FilterRules(tag_names=FITNESS_TAG_NAMES))
    refused = off.receive('["REQ", "d", {"search": "squat"}]', 0)[0]
    assert isinstance(refused, Closed) and str(refused.error).startswith("unsupported: search")
