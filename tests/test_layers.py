"""The packages of ``src/ctsgan`` form layers: no package imports (even lazily) from a package that
imports it back, directly or through others. Layers, bottom up: config, io; viz; data; losses,
networks; metrics; training; nodules; generation; bench; experiments; commands; cli."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ctsgan"
_IMPORT = re.compile(r"^\s*(?:from|import) ctsgan\.(\w+)", re.M)


def package_imports(root: Path = SRC) -> dict[str, set[str]]:
    """package -> the other ctsgan packages its modules import (top-level or inside functions)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in root.rglob("*.py"):
        pkg = path.relative_to(root).parts[0].removesuffix(".py")
        edges[pkg] |= {t for t in _IMPORT.findall(path.read_text()) if t != pkg}
    return edges


def import_cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(a, b) pairs where a imports b and b reaches a again."""

    def reach(start: str) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    return sorted((a, b) for a, targets in edges.items() for b in targets if a in reach(b))


def test_no_package_imports_upward() -> None:
    edges = package_imports()
    assert {"training", "nodules", "metrics", "viz"} <= set(edges)  # the scan found the imports
    assert import_cycles(edges) == []


def test_a_cycle_is_found() -> None:
    """The check has teeth: a package graph with an upward import is reported."""
    assert import_cycles({"viz": {"io"}, "io": {"viz"}, "data": {"io"}}) == [("io", "viz"), ("viz", "io")]
