"""NIP-50 search: the words of a query, the words of an event, and when one matches the other.

The definition lives here, in plain Python, and PostgreSQL is made to agree with it: the
relay computes each searchable event's words (:func:`document_words`) and stores them as
they are (``search_documents``, migration 0011), and :mod:`relay.storage.sqlfilter` turns
a query into a ``tsquery`` over those stored words. Nothing is left to a text-search
parser, a stemmer or a locale, so :func:`matches_document` (what live subscriptions run) and
the SQL give the same answer (tests/property/test_search_sql.py).

A word is a maximal run of letters and digits (Unicode), lowercased. A query matches a
document when *every* query word matches *some* document word:

- the document word starts with the query word ("pres" matches "press"), or
- both are ASCII and their trigram sets are close: ``10 * common >= 3 * union``, where a
  word's trigrams are the three-character windows of ``"  " + word + " "`` (pg_trgm's
  padding, so its GIN index finds the candidates; "bentch" matches "bench").

Tokens of the form ``key:value`` are NIP-50 extensions. None is supported, and as the NIP
asks they are ignored (left out of the words).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relay.nostr.errors import NostrError
from relay.nostr.event import Event

__all__ = [
    "DEFAULT_SEARCH_KINDS",
    "MAX_QUERY_WORDS",
    "MAX_SEARCH_BYTES",
    "MAX_WORD_CHARS",
    "Document",
    "SearchQuery",
    "close",
    "document_of",
    "document_words",
    "matches_document",
    "parse_search",
    "trigrams",
    "word_matches",
    "words_of",
]

DEFAULT_SEARCH_KINDS = frozenset({33401, 33402})
"""Exercise definitions and workout templates (NIP-101e)."""

MAX_SEARCH_BYTES = 1_024
"""Longest ``search`` string accepted, in UTF-8 bytes."""
MAX_QUERY_WORDS = 16
"""Most words a ``search`` string may hold (extensions aside)."""
MAX_WORD_CHARS = 64
"""Longer words are left out of queries and documents alike (no one searches for them)."""
MAX_DOCUMENT_WORDS = 4_096
"""Most distinct words kept of one document (its title and tags come first)."""

_WORD = re.compile(r"[^\W_]+")
_EXTENSION = re.compile(r"[^\s:]+:\S*")

_TITLE_TAGS = ("title", "name")
"""Tags whose values are the document's title (ranked first)."""
_TEXT_TAGS = frozenset(
    {"t", "equipment", "category", "difficulty", "type", "summary", "description", "alt"}
)
"""Other tags whose values are searched, besides the content."""

# The trigram test, as integers: 10 * common >= 3 * union is pg_trgm's default 0.3.
_CLOSE_NUM = 3
_CLOSE_DEN = 10


def words_of(text: str) -> list[str]:
    """The words of ``text`` in order, lowercased, each at most :data:`MAX_WORD_CHARS`."""
    return [w for w in _WORD.findall(text.lower()) if len(w) <= MAX_WORD_CHARS]


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed ``search`` field: its words (extensions left out), in order, each once,
    and the kinds that have search documents (an event of another kind never matches)."""

    text: str
    words: tuple[str, ...]
    kinds: frozenset[int]


def parse_search(value: object, kinds: frozenset[int]) -> SearchQuery:
    """The :class:`SearchQuery` of a filter's ``search`` value.

    Raises:
        NostrError: ``invalid:`` when it is not a string, too long or has too many words.
    """
    if not isinstance(value, str):
        raise NostrError("invalid", "filter field 'search' must be a string")
    if len(value.encode()) > MAX_SEARCH_BYTES:
        raise NostrError(
            "invalid", f"filter field 'search' is longer than {MAX_SEARCH_BYTES} bytes"
        )
    free = " ".join(token for token in value.split() if not _EXTENSION.fullmatch(token))
    words = tuple(dict.fromkeys(words_of(free)))
    if len(words) > MAX_QUERY_WORDS:
        raise NostrError("invalid", f"filter field 'search' has more than {MAX_QUERY_WORDS} words")
    return SearchQuery(free, words, kinds)


@dataclass(frozen=True, slots=True)
class Document:
    """What is stored of a searchable event: its title words (joined by spaces), all its
    distinct words (title first, then the other text tags, then the content), and how many
    of those come from the title and the tags (for ranking)."""

    title: str
    words: tuple[str, ...]
    in_title: int = 0
    in_tags: int = 0

    def vector(self) -> str:
        """The words as ``tsvector`` input, each once at its position, title words weighted
        A and tag words B (content words keep the default, D), for ``ts_rank``. The words
        are letters and digits only, so quoting each is all the escaping they need."""
        a, b = self.in_title, self.in_title + self.in_tags
        return " ".join(
            f"'{w}':{n}{'A' if n <= a else 'B' if n <= b else ''}"
            for n, w in enumerate(self.words, start=1)
        )


def document_of(event: Event) -> Document:
    """The search document of ``event``: words of its title tags, of its other text tags
    (hashtags, equipment, ...) and of its content."""
    title: list[str] = []
    others: list[str] = []
    for tag in event.tags:
        if len(tag) < 2:
            continue
        if tag[0] in _TITLE_TAGS:
            title.extend(words_of(tag[1]))
        elif tag[0] in _TEXT_TAGS:
            others.extend(words_of(tag[1]))
    distinct = dict.fromkeys(title)
    in_title = len(distinct)
    distinct.update(dict.fromkeys(others))
    in_tags = len(distinct) - in_title
    distinct.update(dict.fromkeys(words_of(event.content)))
    return Document(" ".join(title), tuple(distinct)[:MAX_DOCUMENT_WORDS], in_title, in_tags)


def document_words(event: Event) -> tuple[str, ...]:
    return document_of(event).words


@functools.lru_cache(maxsize=8192)
def trigrams(word: str) -> frozenset[str]:
    """pg_trgm's trigrams of one lowercase word: the windows of ``"  " + word + " "``
    (kept for the words seen lately: a live search compares each query word with every word
    of each event's document)."""
    padded = f"  {word} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def close(a: str, b: str) -> bool:
    """True when two ASCII words are close by trigrams (see the module docstring)."""
    ta, tb = trigrams(a), trigrams(b)
    common = len(ta & tb)
    return _CLOSE_DEN * common >= _CLOSE_NUM * (len(ta) + len(tb) - common)


def word_matches(query_word: str, document_word: str) -> bool:
    """True when one query word matches one document word (a prefix, or close by trigrams
    when both are ASCII)."""
    if document_word.startswith(query_word):
        return True
    return query_word.isascii() and document_word.isascii() and close(query_word, document_word)


def matches_document(words: Sequence[str], document: Iterable[str]) -> bool:
    """True when every query word matches some document word (an empty query matches every
    document)."""
    held = tuple(document)
    return all(any(word_matches(q, d) for d in held) for q in words)
