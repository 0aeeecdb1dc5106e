"""The import graph keeps the layers apart: a pure core, storage on top of it, the asyncio
shell and the indexer side by side, and one composition root that joins them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("relay", "indexer")
COMPOSITION_ROOT = "relay.app"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module of ours that ``path`` imports, wherever the import statement is
    (function bodies and ``TYPE_CHECKING`` blocks included)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            graph[module] = _imports(path, module)
    return graph


GRAPH = _graph()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _offenders(source: str, allowed: tuple[str, ...]) -> dict[str, set[str]]:
    bad: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        if not _within(module, source):
            continue
        wrong = {
            name
            for name in imported
            if not any(_within(name, ok) for ok in allowed) and name in GRAPH
        }
        if wrong:
            bad[module] = wrong
    return bad


def test_the_graph_was_read() -> None:
    assert "relay.nostr.session" in GRAPH and "indexer.follower" in GRAPH
    assert "relay.nostr.replies" in GRAPH["relay.nostr.session"]


def test_the_core_imports_nothing_of_ours_but_itself() -> None:
    assert _offenders("relay.nostr", ("relay.nostr",)) == {}


def test_storage_builds_only_on_the_core() -> None:
    assert _offenders("relay.storage", ("relay.storage", "relay.nostr")) == {}


def test_the_indexer_never_imports_the_server() -> None:
    allowed = ("indexer", "relay.nostr", "relay.storage", "relay.config", "relay.scrape")
    assert _offenders("indexer", allowed) == {}


def test_the_server_never_imports_the_indexer() -> None:
    bad = {m: {n for n in i if _within(n, "indexer")} for m, i in GRAPH.items()}
    assert {m: i for m, i in bad.items() if i and _within(m, "relay.server")} == {}


def test_only_the_composition_root_imports_both() -> None:
    both = [
        module
        for module, imported in GRAPH.items()
        if any(_within(n, "indexer") for n in imported)
        and any(_within(n, "relay.server") for n in imported)
    ]
    assert both == [COMPOSITION_ROOT]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_is_much_over_500_lines(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    lines = len(path.read_text().splitlines())
    assert lines <= 560, f"{module} has {lines} lines: split it by noun"
