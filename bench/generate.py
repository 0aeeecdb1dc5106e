"""Signed benchmark events: a fitness-heavy mix from Zipf-skewed authors, cached on disk.

The main set (``events-<n>-<seed>.jsonl``) holds, in roughly chronological order, exercises
(33401), templates (33402) that reference them, workout records (1301) in the NIP-101e/POWR
per-set dialect and RUNSTR's cardio dialect, NIP-51 sets (30003, 30004) with ``a`` tags, and
ordinary traffic: profiles (0), notes and replies (1), contact lists (3), deletions (5, by
``e`` and by ``a``) and reactions (7). Replaceable and addressable events get later versions,
so the relay's replacement and deletion rules matter to every query.

The stream set (``stream-<n>-<seed>.jsonl``) feeds the stop-and-wait publishers. Its events
come from separate authors, are newer than every main event and reference only each other,
so however many of them a relay stores, no query shape of :mod:`bench.query` matches them.

The deep-pagination set (``pagination-<n>-<seed>.jsonl``) is ``n`` kind 1 notes by one
author of its own, without tags, with distinct ``created_at`` values one second apart ending
a month before the main set begins: no query shape matches them either.

Everything derives from the seed; signing runs in worker processes (libsecp256k1, BIP-340).
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import msgspec
import secp256k1

from relay.nostr.event import canonical_bytes

__all__ = [
    "END_TIME",
    "FITNESS_MIX",
    "GEN_VERSION",
    "PAGINATION_END",
    "Dataset",
    "PaginationSet",
    "ensure_dataset",
    "ensure_pagination_set",
    "generate_events",
    "generate_pagination",
    "pagination_pubkey",
    "pubkey_of",
    "secret_key",
]

GEN_VERSION = 1
"""Bump when the generator's output changes, so cached files are regenerated."""
END_TIME = 1_735_689_600
"""2025-01-01T00:00:00Z: every main event is older than this, the stream events newer."""
SPAN = 2 * 365 * 86_400
START_TIME = END_TIME - SPAN
ZIPF_S = 0.8
STREAM_AUTHORS = 100
PAGINATION_END = START_TIME - 30 * 86_400
"""The newest deep-pagination event; the others are one second apart going back. A month
older than every main event, so no time window of a query shape reaches them."""
STREAM_TAG = "benchstream"
CHUNK = 2_000

Tags = list[list[str]]


@dataclass(frozen=True)
class Dataset:
    """The cached files of one (n, seed, authors) and how they were made."""

    path: Path
    stream_path: Path
    meta: dict[str, Any]
    cached: bool


def secret_key(seed: int, index: int) -> bytes:
    return hashlib.sha256(f"fitrelay-bench-{seed}-{index}".encode()).digest()


def pubkey_of(secret: bytes) -> str:
    return str(secp256k1.PrivateKey(secret, raw=True).pubkey.serialize()[1:].hex())


# -- vocabularies ---------------------------------------------------------------------------

_STRENGTH = (("weight", "reps", "rpe", "set_type"), ("kg", "count", "0-10", "enum"))
_STRENGTH_LBS = (("weight", "reps", "rpe", "set_type"), ("lbs", "count", "0-10", "enum"))
_BODY = (("reps", "set_type"), ("count", "enum"))
_BODY_W = (("weight", "reps", "set_type"), ("kg", "count", "enum"))
_HOLD = (("duration", "rpe", "set_type"), ("seconds", "0-10", "enum"))
_ERG = (("duration", "distance", "set_type"), ("seconds", "m", "enum"))

EXERCISES: list[tuple[str, tuple[tuple[str, ...], tuple[str, ...]], str, str]] = [
    ("Back Squat", _STRENGTH, "barbell", "legs"),
    ("Front Squat", _STRENGTH, "barbell", "legs"),
    ("Bench Press", _STRENGTH, "barbell", "chest"),
    ("Incline Bench Press", _STRENGTH_LBS, "barbell", "chest"),
    ("Deadlift", _STRENGTH, "barbell", "back"),
    ("Romanian Deadlift", _STRENGTH, "barbell", "legs"),
    ("Overhead Press", _STRENGTH, "barbell", "shoulders"),
    ("Pull Up", _BODY_W, "bodyweight", "back"),
    ("Chin Up", _BODY_W, "bodyweight", "back"),
    ("Push Up", _BODY, "bodyweight", "chest"),
    ("Dip", _BODY_W, "bodyweight", "arms"),
    ("Plank", _HOLD, "bodyweight", "core"),
    ("Side Plank", _HOLD, "bodyweight", "core"),
    ("Dumbbell Row", _STRENGTH_LBS, "dumbbell", "back"),
    ("Goblet Squat", _STRENGTH, "kettlebell", "legs"),
    ("Kettlebell Swing", _STRENGTH, "kettlebell", "full body"),
    ("Walking Lunge", _STRENGTH, "dumbbell", "legs"),
    ("Leg Press", _STRENGTH, "machine", "legs"),
    ("Lat Pulldown", _STRENGTH, "cable", "back"),
    ("Face Pull", _STRENGTH, "cable", "shoulders"),
    ("Bicep Curl", _STRENGTH_LBS, "dumbbell", "arms"),
    ("Tricep Pushdown", _STRENGTH, "cable", "arms"),
    ("Hip Thrust", _STRENGTH, "barbell", "glutes"),
    ("Box Jump", _BODY, "bodyweight", "legs"),
    ("Burpee", _BODY, "bodyweight", "full body"),
    ("Rowing Machine", _ERG, "machine", "cardio"),
    ("Assault Bike", _ERG, "machine", "cardio"),
    ("Farmer Carry", _HOLD, "dumbbell", "full body"),
]
HASHTAGS = [
    "fitness", "running", "nostr", "gym", "workout", "bitcoin", "powerlifting", "cycling",
    "strength", "health", "runstr", "powr", "cardio", "training", "legday", "marathon",
    "nutrition", "motivation", "hiking", "yoga", "crossfit", "swimming", "plebchain",
    "grownostr", "zapathon", "coffee", "photography", "music", "art", "food", "travel",
    "sunday", "trailrunning", "5k", "10k", "halfmarathon", "mobility", "recovery", "sleep",
    "meditation",
]  # fmt: skip
LIST_NAMES = [
    "fitness-bookmarks", "favourite-exercises", "powr-library", "leg-day", "push-pull-legs",
    "home-workouts", "running-plans", "coach-picks",
]  # fmt: skip
WORDS = (
    "the a to and of in is it that for on was with my this at be just so but not have are "
    "today run gym lift morning felt great new pr week day squat bench deadlift km pace "
    "legs back chest coffee nostr zap sats bitcoin good love time training plan rest sleep "
    "recovery sore heavy light easy hard tempo interval long slow fast weather rain sun "
    "trail road track miles weights sets reps form coach program progress goal race "
    "marathon half strong stronger again finally after before tomorrow yesterday hour "
    "minutes body mind health food protein water stretch mobility yoga swim bike ride walk "
    "hike climb team friends family work home city park beach mountain river forest"
).split()
ACTIVITIES = [  # activity, seconds per km, log of the typical distance in km
    ("running", (270, 450), 1.6),
    ("walking", (540, 780), 1.2),
    ("cycling", (110, 200), 3.0),
]
EMOJI = ["🤙", "❤️", "🔥", "💪", "⚡", "😂", "🫂", "🏃"]
CLIENTS = [["client", "Amethyst"], ["client", "Damus"], ["client", "Primal"], ["client", "POWR"]]

# Share of each event type in the main set (sums to 100).
MIX: list[tuple[str, int]] = [
    ("note", 32),
    ("reaction", 22),
    ("record_nip101e", 18),
    ("record_runstr", 12),
    ("exercise", 4),
    ("template", 3),
    ("delete", 3),
    ("metadata", 2),
    ("follows", 2),
    ("bookmarks", 1),
    ("curation", 1),
]

FITNESS_MIX: list[tuple[str, int]] = [
    ("record_nip101e", 18),
    ("record_runstr", 12),
    ("exercise", 4),
    ("template", 3),
    ("delete", 1),
]
"""The indexer benchmark's set: fitness kinds only, in both record dialects, with new
versions of exercises and templates and a few deletions (of records and templates)."""

_WEIGHTS = ["0", "20", "40", "60", "80", "100", "120", "140"]
_NUMBERS = [str(i) for i in range(100)]
_T = TypeVar("_T")


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass(slots=True)
class _Row:
    author: int
    digest: bytes
    created_at: int
    kind: int
    tags: Tags
    content: str


class _Plan:
    """Decides every event of one set, computing ids as it goes (references need them)."""

    def __init__(self, seed: int, authors: int, mix: Sequence[tuple[str, int]] = MIX) -> None:
        self.rng = random.Random(seed)
        self.authors = authors
        self.secrets = [secret_key(seed, i) for i in range(authors + STREAM_AUTHORS)]
        self.pubkeys = [pubkey_of(s) for s in self.secrets]
        self.cum = list(itertools.accumulate(1.0 / (i + 1) ** ZIPF_S for i in range(authors)))
        self.total = self.cum[-1]
        self.tag_cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(HASHTAGS))))
        mix_kinds, mix_weights = zip(*mix, strict=True)
        self.mix_kinds: tuple[str, ...] = mix_kinds
        self.mix_cum = list(itertools.accumulate(mix_weights))
        # State the next events refer to.
        self.recent: collections.deque[tuple[str, int, int, str]] = collections.deque(
            maxlen=5_000
        )  # (id, author, kind, root id) of notes and records
        self.hot: collections.deque[tuple[str, int, int, str]] = collections.deque(maxlen=300)
        self.own_regular: dict[int, list[tuple[str, int]]] = collections.defaultdict(list)
        self.exercises: dict[int, list[str]] = collections.defaultdict(list)
        self.templates: dict[int, list[str]] = collections.defaultdict(list)
        self.lists: dict[tuple[int, int], list[str]] = collections.defaultdict(list)
        self.global_exercises: list[str] = []
        self.global_templates: list[str] = []
        self.versions: dict[tuple[int, int, str], tuple[int, str]] = {}
        self.rows: list[_Row] = []

    # -- primitives -----------------------------------------------------------------------

    def ri(self, low: int, high: int) -> int:
        """A uniform integer in [low, high] (faster than ``Random.randint``)."""
        return low + int(self.rng.random() * (high - low + 1))

    def pick(self, seq: Sequence[_T]) -> _T:
        return seq[int(self.rng.random() * len(seq))]

    def author(self) -> int:
        return bisect.bisect_left(self.cum, self.rng.random() * self.total)

    def hashtag(self) -> str:
        i = bisect.bisect_left(self.tag_cum, self.rng.random() * self.tag_cum[-1])
        return HASHTAGS[min(i, len(HASHTAGS) - 1)]

    def words(self, mean_log: float, sigma: float = 0.9, cap: int = 150) -> str:
        k = max(1, min(cap, int(self.rng.lognormvariate(mean_log, sigma))))
        return " ".join(self.rng.choices(WORDS, k=k))

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def emit(self, author: int, created_at: int, kind: int, tags: Tags, content: str) -> str:
        digest = hashlib.sha256(
            canonical_bytes(self.pubkeys[author], created_at, kind, tags, content)
        ).digest()
        self.rows.append(_Row(author, digest, created_at, kind, tags, content))
        return digest.hex()

    def version_time(self, key: tuple[int, int, str], t: int) -> int:
        last = self.versions.get(key)
        return t if last is None or last[0] < t else last[0] + 1

    def emit_versioned(
        self, author: int, t: int, kind: int, d: str | None, tags: Tags, content: str
    ) -> str:
        key = (kind, author, "" if d is None else d)
        created = self.version_time(key, t)
        event_id = self.emit(author, created, kind, tags, content)
        self.versions[key] = (created, event_id)
        return event_id

    def coord(self, kind: int, author: int, d: str) -> str:
        return f"{kind}:{self.pubkeys[author]}:{d}"

    def pick_exercise(self, author: int) -> str:
        own = self.exercises.get(author)
        if own and (self.rng.random() < 0.6 or not self.global_exercises):
            return self.coord(33401, author, self.pick(own))
        if self.global_exercises:
            return self.pick(self.global_exercises)
        # Nothing published yet: a dangling reference, as real clients produce.
        return f"33401:{self.pubkeys[author]}:exercise-{self.rng.getrandbits(32):08x}"

    def target(self) -> tuple[str, int, int, str] | None:
        if self.hot and self.rng.random() < 0.5:
            return self.pick(self.hot)
        if self.recent:
            # Recent posts are likelier targets.
            idx = len(self.recent) - 1 - int(len(self.recent) * self.rng.random() ** 3)
            return self.recent[max(0, idx)]
        return None

    def remember(self, event_id: str, author: int, kind: int, root: str, created: int) -> None:
        entry = (event_id, author, kind, root)
        self.recent.append(entry)
        if kind == 1 and self.rng.random() < 0.05:
            self.hot.append(entry)
        regular = self.own_regular[author]
        regular.append((event_id, created))
        if len(regular) > 60:
            del regular[:20]

    # -- event types ----------------------------------------------------------------------

    def note(self, a: int, t: int) -> None:
        tags: Tags = []
        root = ""
        target = self.target() if self.rng.random() < 0.3 else None
        if target is not None:
            parent_id, parent_author, _, parent_root = target
            root = parent_root or parent_id
            tags.append(["e", root, "", "root"])
            if root != parent_id:
                tags.append(["e", parent_id, "", "reply"])
            tags.append(["p", self.pubkeys[parent_author]])
        content = self.words(2.6)
        if self.rng.random() < 0.4:
            for _ in range(self.ri(1, 3)):
                tag = self.hashtag()
                tags.append(["t", tag])
                content += f" #{tag}"
        if self.rng.random() < 0.05:
            mention = self.author()
            tags.append(["p", self.pubkeys[mention]])
        if self.rng.random() < 0.3:
            tags.append(list(self.pick(CLIENTS)))
        event_id = self.emit(a, t, 1, tags, content)
        self.remember(event_id, a, 1, root, t)

    def reaction(self, a: int, t: int) -> None:
        target = self.target()
        if target is None:
            self.note(a, t)
            return
        target_id, target_author, target_kind, _ = target
        content = "+" if self.rng.random() < 0.7 else self.pick(EMOJI)
        tags = [["e", target_id], ["p", self.pubkeys[target_author]], ["k", str(target_kind)]]
        event_id = self.emit(a, t, 7, tags, content)
        regular = self.own_regular[a]
        regular.append((event_id, t))
        if len(regular) > 60:
            del regular[:20]

    def exercise(self, a: int, t: int) -> None:
        own = self.exercises[a]
        if own and self.rng.random() < 0.25:
            d = self.pick(own)  # a new version of one of the author's exercises
        else:
            form = self.rng.random()
            if form < 0.4:
                d = f"exercise-{t}"
            elif form < 0.7:
                d = f"local:{t:x}-{self.rng.getrandbits(40):010x}"
            else:
                d = self.uuid()
            if d in own:
                d = self.uuid()
            own.append(d)
            self.global_exercises.append(self.coord(33401, a, d))
        name, (fmt, units), equipment, muscle = self.pick(EXERCISES)
        tags = [
            ["d", d],
            ["title", name],
            ["format", *fmt],
            ["format_units", *units],
            ["equipment", equipment],
            ["difficulty", self.pick(["beginner", "intermediate", "advanced"])],
            ["t", muscle],
            ["t", "fitness"],
        ]
        if self.rng.random() < 0.3:
            tags.append(["t", "powr"])
        self.emit_versioned(a, t, 33401, d, tags, f"How to do a {name}: {self.words(3.5)}")

    def _sets(self, coord: str, count: int, tags: Tags, with_number: bool) -> None:
        r = self.rng.random
        for n in range(1, count + 1):
            weight = _WEIGHTS[int(r() * len(_WEIGHTS))]
            reps = _NUMBERS[3 + int(r() * 13)]
            rpe = _NUMBERS[5 + int(r() * 6)]
            kind = "warmup" if n == 1 and r() < 0.3 else "normal"
            tag = ["exercise", coord, "", weight, reps, rpe, kind]
            if with_number:
                tag.append(_NUMBERS[n])
            tags.append(tag)

    def template(self, a: int, t: int) -> None:
        own = self.templates[a]
        if own and self.rng.random() < 0.3:
            d = self.pick(own)
        else:
            d = f"template-{t}-{self.rng.getrandbits(24):06x}"
            own.append(d)
            self.global_templates.append(self.coord(33402, a, d))
        kind = self.pick(["strength", "strength", "circuit", "emom", "amrap"])
        title = f"{self.pick(['Leg', 'Push', 'Pull', 'Upper', 'Lower', 'Full body'])} day"
        tags: Tags = [["d", d], ["title", title], ["type", kind]]
        if kind != "strength":
            tags.append(["rounds", str(self.ri(2, 5))])
            tags.append(["duration", str(self.pick([600, 900, 1200, 1800]))])
        tags.append(["rest_between_sets", str(self.pick([60, 90, 120, 180]))])
        for _ in range(self.ri(3, 8)):
            self._sets(self.pick_exercise(a), 1, tags, with_number=False)
        tags.append(["t", "fitness"])
        self.emit_versioned(a, t, 33402, d, tags, self.words(2.5))

    def record_nip101e(self, a: int, t: int) -> None:
        tags: Tags = [["d", self.uuid()]]
        coords: list[str]
        template = None
        if self.templates.get(a) and self.rng.random() < 0.6:
            template = self.coord(33402, a, self.pick(self.templates[a]))
        elif self.global_templates and self.rng.random() < 0.3:
            template = self.pick(self.global_templates)
        coords = [self.pick_exercise(a) for _ in range(self.ri(2, 6))]
        duration = self.ri(900, 5400)
        tags += [
            ["title", self.pick(["Leg day", "Push day", "Pull day", "Workout", "Circuit"])],
            ["type", self.pick(["strength", "strength", "circuit"])],
            ["start", str(t - duration)],
            ["end", str(t)],
            ["completed", "true" if self.rng.random() < 0.9 else "false"],
        ]
        if template is not None:
            tags.append(["template", template, ""])
        for coord in coords:
            self._sets(coord, self.ri(2, 5), tags, with_number=True)
        if self.rng.random() < 0.1:
            tags.append(["pr", f"{coords[0]},max_weight,{self.ri(60, 200)}"])
        tags.append(["t", "fitness"])
        if self.rng.random() < 0.3:
            tags.append(["t", self.pick(["powr", "strength", "legday", "gym"])])
        content = self.words(2.0) if self.rng.random() < 0.3 else ""
        event_id = self.emit(a, t, 1301, tags, content)
        self.remember(event_id, a, 1301, "", t)

    def runstr_tags(self, t: int, stream: bool) -> tuple[Tags, str]:
        activity, per_km, mean = self.pick(ACTIVITIES)
        km = round(min(60.0, max(0.8, self.rng.lognormvariate(mean, 0.45))), 2)
        metric = self.rng.random() < 0.7
        unit_len = 1.0 if metric else 1.609
        distance = km if metric else round(km / 1.609, 2)
        pace = self.ri(*per_km)
        total = int(km * pace)
        when = self.pick(["Morning", "Lunch", "Evening", "Night"])
        noun = {"running": "Run", "walking": "Walk", "cycling": "Ride"}[activity]
        tags: Tags = [
            ["d", ("stream-" if stream else "") + self.uuid()],
            ["title", f"{when} {noun}"],
            ["exercise", activity],
            ["distance", f"{distance:.2f}", "km" if metric else "mi"],
            ["duration", _hms(total)],
            ["elevation_gain", str(self.ri(0, 400)), "m"],
            ["calories", str(int(km * self.ri(50, 80)))],
            ["source", "RUNSTR"],
            ["client", "RUNSTR", "v1.1.4"],
        ]
        for k in range(1, int(distance) + 1):
            tags.append(["split", str(k), _hms(int(k * pace * unit_len))])
        if stream:
            tags.append(["t", STREAM_TAG])
        else:
            tags.append(["t", activity.capitalize()])
            if self.rng.random() < 0.3:
                tags.append(["t", self.pick(["runstr", "cardio", "5k", "trailrunning"])])
        unit = "km" if metric else "mi"
        return tags, f"Completed a {distance:.2f}{unit} {noun.lower()}. 🏃"

    def record_runstr(self, a: int, t: int) -> None:
        tags, content = self.runstr_tags(t, stream=False)
        event_id = self.emit(a, t, 1301, tags, content)
        self.remember(event_id, a, 1301, "", t)

    def delete(self, a: int, t: int) -> None:
        choice = self.rng.random()
        owned = [k for k in (30003, 30004) if self.lists.get((a, k))]
        if choice < 0.15 and (owned or self.templates.get(a)):
            # By address: every version up to this deletion goes.
            if owned:
                kind = self.pick(owned)
                d = self.pick(self.lists[(a, kind)])
            else:
                kind, d = 33402, self.pick(self.templates[a])
            last = self.versions.get((kind, a, d))
            created = t if last is None else max(t, last[0] + 1)
            tags = [["a", self.coord(kind, a, d)], ["k", str(kind)]]
            self.emit(a, created, 5, tags, "")
            return
        if choice < 0.25 and self.templates.get(a):
            # By id of the current version, as POWR deletes a template.
            d = self.pick(self.templates[a])
            created_v, current = self.versions[(33402, a, d)]
            tags = [["e", current], ["k", "33402"]]
            self.emit(a, max(t, created_v + 1), 5, tags, "")
            return
        regular = self.own_regular.get(a)
        if not regular:
            self.note(a, t)
            return
        targets = [regular.pop(self.rng.randrange(len(regular)))]
        while regular and len(targets) < 3 and self.rng.random() < 0.3:
            targets.append(regular.pop(self.rng.randrange(len(regular))))
        created = max([t] + [c + 1 for _, c in targets])
        tags = [["e", event_id] for event_id, _ in targets]
        content = self.pick(["", "", "mistake", "posted twice"])
        self.emit(a, created, 5, tags, content)

    def metadata(self, a: int, t: int) -> None:
        name = f"{self.pick(WORDS)}{self.ri(1, 9999)}"
        profile = {
            "name": name,
            "display_name": name.title(),
            "about": self.words(2.8),
            "picture": f"https://images.example.com/{self.rng.getrandbits(64):016x}.jpg",
            "nip05": f"{name}@example.com",
            "lud16": f"{name}@walletofsatoshi.com",
        }
        self.emit_versioned(a, t, 0, None, [], json.dumps(profile, ensure_ascii=False))

    def follows(self, a: int, t: int) -> None:
        count = max(1, min(1000, int(self.rng.lognormvariate(4.3, 1.0))))
        picks = self.rng.choices(range(self.authors), cum_weights=self.cum, k=count)
        tags: Tags = []
        for p in dict.fromkeys(picks):
            if p == a:
                continue
            if self.rng.random() < 0.2:
                tags.append(["p", self.pubkeys[p], "wss://relay.example.com"])
            else:
                tags.append(["p", self.pubkeys[p]])
        self.emit_versioned(a, t, 3, None, tags, "")

    def nip51(self, a: int, t: int, kind: int) -> None:
        own = self.lists[(a, kind)]
        items: Tags = []
        if own and self.rng.random() < 0.4:
            d = self.pick(own)
        else:
            if self.rng.random() < 0.5:
                d = self.pick(LIST_NAMES)
            else:
                d = f"list-{self.rng.getrandbits(32):08x}"
            if d not in own:
                own.append(d)
        tags: Tags = [["d", d], ["title", d.replace("-", " ").title()]]
        for _ in range(self.ri(3, 30)):
            if kind == 30004 and self.global_templates and self.rng.random() < 0.5:
                items.append(["a", self.pick(self.global_templates)])
            elif self.global_exercises and self.rng.random() < 0.8:
                items.append(["a", self.pick(self.global_exercises)])
            elif self.recent:
                items.append(["e", self.pick(self.recent)[0]])
        tags += list({tuple(x): x for x in items}.values())
        self.emit_versioned(a, t, kind, d, tags, "")

    # -- sets -----------------------------------------------------------------------------

    def main_set(self, n: int) -> Iterator[list[_Row]]:
        handlers: dict[str, Callable[[int, int], None]] = {
            "note": self.note,
            "reaction": self.reaction,
            "record_nip101e": self.record_nip101e,
            "record_runstr": self.record_runstr,
            "exercise": self.exercise,
            "template": self.template,
            "delete": self.delete,
            "metadata": self.metadata,
            "follows": self.follows,
            "bookmarks": lambda a, t: self.nip51(a, t, 30003),
            "curation": lambda a, t: self.nip51(a, t, 30004),
        }
        rng = self.rng
        total = self.mix_cum[-1]
        for i in range(n):
            t = START_TIME + int(i * SPAN / max(1, n)) + int(rng.random() * 3600) - 1800
            kind = self.mix_kinds[bisect.bisect_right(self.mix_cum, rng.random() * total)]
            handlers[kind](self.author(), min(t, END_TIME - 1))
            if len(self.rows) >= CHUNK:
                yield self.flush()
        if self.rows:
            yield self.flush()

    def stream_set(self, n: int) -> Iterator[list[_Row]]:
        """Regular events by separate authors, newer than the main set: notes and records
        tagged ``#benchstream``, reactions to those notes."""
        rng = self.rng
        notes: list[tuple[str, int]] = []
        for i in range(n):
            a = self.authors + int(rng.random() * STREAM_AUTHORS)
            t = END_TIME + 60 + i
            r = rng.random()
            if r < 0.3:
                tags, content = self.runstr_tags(t, stream=True)
                self.emit(a, t, 1301, tags, content)
            elif r < 0.4 and notes:
                target, author = self.pick(notes)
                tags = [["e", target], ["p", self.pubkeys[author]], ["k", "1"]]
                self.emit(a, t, 7, tags, "+")
            else:
                tags = [["t", STREAM_TAG]]
                event_id = self.emit(a, t, 1, tags, self.words(2.6) + f" #{STREAM_TAG}")
                notes.append((event_id, a))
                if len(notes) > 1000:
                    del notes[:500]
            if len(self.rows) >= CHUNK:
                yield self.flush()
        if self.rows:
            yield self.flush()

    def flush(self) -> list[_Row]:
        rows, self.rows = self.rows, []
        return rows


# -- signing --------------------------------------------------------------------------------

_KEYS: list[Any] = []


def _init_worker(secrets: list[bytes]) -> None:
    global _KEYS
    _KEYS = [secp256k1.PrivateKey(s, raw=True) for s in secrets]


def _sign_chunk(job: tuple[list[int], bytes]) -> bytes:
    authors, digests = job
    keys = _KEYS
    return b"".join(
        keys[a].schnorr_sign(digests[32 * i : 32 * i + 32], None, raw=True)
        for i, a in enumerate(authors)
    )


class _Writer:
    """Signs chunks in a process pool (bounded look-ahead) and writes them in order."""

    def __init__(
        self, secrets: list[bytes], pubkeys: list[str], out: BinaryIO, workers: int
    ) -> None:
        self.pubkeys = pubkeys
        self.out = out
        self.count = 0
        self.pending: collections.deque[tuple[AsyncResult[bytes], list[_Row]]] = collections.deque()
        self.workers = workers
        self.pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(secrets,))
        else:
            _init_worker(secrets)
        self.encoder = msgspec.json.Encoder()

    def submit(self, rows: list[_Row]) -> None:
        job = ([r.author for r in rows], b"".join(r.digest for r in rows))
        if self.pool is None:
            self._write(rows, _sign_chunk(job))
            return
        self.pending.append((self.pool.apply_async(_sign_chunk, (job,)), rows))
        while len(self.pending) > 2 * self.workers:
            self._drain_one()

    def _drain_one(self) -> None:
        result, rows = self.pending.popleft()
        self._write(rows, result.get())

    def _write(self, rows: list[_Row], sigs: bytes) -> None:
        pubkeys = self.pubkeys
        encode = self.encoder.encode
        lines = []
        for i, r in enumerate(rows):
            lines.append(
                encode(
                    {
                        "id": r.digest.hex(),
                        "pubkey": pubkeys[r.author],
                        "created_at": r.created_at,
                        "kind": r.kind,
                        "tags": r.tags,
                        "content": r.content,
                        "sig": sigs[64 * i : 64 * i + 64].hex(),
                    }
                )
            )
        self.out.write(b"\n".join(lines) + b"\n")
        self.count += len(rows)

    def close(self) -> None:
        while self.pending:
            self._drain_one()
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def generate_events(
    n: int,
    seed: int,
    authors: int,
    out: BinaryIO,
    *,
    stream: bool = False,
    workers: int = 1,
    mix: Sequence[tuple[str, int]] = MIX,
) -> int:
    """Write ``n`` signed events (the main set, or the stream set) as JSON Lines; ``mix``
    weighs the main set's event types (:data:`MIX`, or :data:`FITNESS_MIX`)."""
    plan = _Plan(seed, authors, mix)
    writer = _Writer(plan.secrets, plan.pubkeys, out, workers)
    try:
        chunks = plan.stream_set(n) if stream else plan.main_set(n)
        for rows in chunks:
            writer.submit(rows)
    finally:
        writer.close()
    return writer.count


def pagination_pubkey(seed: int) -> str:
    return pubkey_of(_pagination_secret(seed))


def _pagination_secret(seed: int) -> bytes:
    return hashlib.sha256(f"fitrelay-bench-pagination-{seed}".encode()).digest()


def generate_pagination(n: int, seed: int, out: BinaryIO, *, workers: int = 1) -> int:
    """Write ``n`` signed kind 1 notes by one author of their own, newest first: note ``i``
    has ``created_at = PAGINATION_END - i``, no tags, and a few words of content."""
    secret = _pagination_secret(seed)
    pubkey = pubkey_of(secret)
    rng = random.Random(seed * 104_729 + 11)
    writer = _Writer([secret], [pubkey], out, workers)
    try:
        rows: list[_Row] = []
        for i in range(n):
            created = PAGINATION_END - i
            k = max(1, min(60, int(rng.lognormvariate(2.6, 0.9))))
            content = " ".join(rng.choices(WORDS, k=k))
            digest = hashlib.sha256(canonical_bytes(pubkey, created, 1, [], content)).digest()
            rows.append(_Row(0, digest, created, 1, [], content))
            if len(rows) >= CHUNK:
                writer.submit(rows)
                rows = []
        if rows:
            writer.submit(rows)
    finally:
        writer.close()
    return writer.count


@dataclass(frozen=True)
class PaginationSet:
    """The cached deep-pagination file of one (n, seed): ``n`` notes by ``pubkey``."""

    path: Path
    pubkey: str
    meta: dict[str, Any]
    cached: bool


def _cached_meta(meta_path: Path, want: dict[str, Any], *files: Path) -> dict[str, Any] | None:
    """The metadata of a cached generation when it and ``files`` exist and it was made with
    the parameters in ``want``; None when it has to be generated (again)."""
    if not meta_path.exists() or not all(f.exists() for f in files):
        return None
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return meta if {k: meta.get(k) for k in want} == want else None


def ensure_pagination_set(
    n: int,
    seed: int,
    cache_dir: Path,
    *,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> PaginationSet:
    """The cached ``pagination-<n>-<seed>.jsonl``, generating it first when missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"pagination-{n}-{seed}.jsonl"
    meta_path = cache_dir / f"pagination-{n}-{seed}.meta.json"
    want = {"version": GEN_VERSION, "events": n, "seed": seed, "newest": PAGINATION_END}
    meta = _cached_meta(meta_path, want, path)
    if meta is not None:
        return PaginationSet(path, meta["pubkey"], meta, cached=True)
    workers = workers or os.cpu_count() or 1
    log(f"generating {n:,} deep-pagination events ({workers} signing processes)")
    started = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        generate_pagination(n, seed, out, workers=workers)
    tmp.replace(path)
    meta = {
        **want,
        "pubkey": pagination_pubkey(seed),
        "oldest": PAGINATION_END - n + 1,
        "generation_seconds": round(time.perf_counter() - started, 2),
        "signing_processes": workers,
        "bytes": path.stat().st_size,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"generated in {meta['generation_seconds']} s ({meta['bytes'] / 1e6:.0f} MB)")
    return PaginationSet(path, meta["pubkey"], meta, cached=False)


def stream_size(n: int) -> int:
    return max(2_000, n // 5)


def ensure_dataset(
    n: int,
    seed: int,
    authors: int,
    cache_dir: Path,
    *,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> Dataset:
    """The cached files for (n, seed, authors), generating them first when missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"events-{n}-{seed}.jsonl"
    stream_path = cache_dir / f"stream-{n}-{seed}.jsonl"
    meta_path = cache_dir / f"events-{n}-{seed}.meta.json"
    want = {"version": GEN_VERSION, "events": n, "seed": seed, "authors": authors}
    meta = _cached_meta(meta_path, want, path, stream_path)
    if meta is not None:
        return Dataset(path, stream_path, meta, cached=True)
    workers = workers or os.cpu_count() or 1
    log(f"generating {n:,} events + {stream_size(n):,} stream events ({workers} signing processes)")
    started = time.perf_counter()
    for target, count, is_stream in ((path, n, False), (stream_path, stream_size(n), True)):
        tmp = target.with_suffix(".tmp")
        with tmp.open("wb") as out:
            generate_events(count, seed, authors, out, stream=is_stream, workers=workers)
        tmp.replace(target)
    seconds = time.perf_counter() - started
    meta = {
        **want,
        "stream_events": stream_size(n),
        "generation_seconds": round(seconds, 2),
        "signing_processes": workers,
        "bytes": path.stat().st_size,
        "end_time": END_TIME,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"generated in {seconds:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
    return Dataset(path, stream_path, meta, cached=False)
