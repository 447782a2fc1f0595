"""The package's layout: no module imports itself back through another, anywhere in the package.

Circles made the parts hard to read and to load alone: ``spec/pipeline.py`` -> ``targets/registry.py``
-> ``targets/base.py`` -> ``spec/pipeline.py`` (the registry of target actions now sits below both, as data,
and reading the spec no longer loads the target contract), ``plugin/api.py`` <-> ``plugin/pages.py``
(what both need is ``plugin/access.py``), ``build/record.py`` <-> ``build/status.py`` (the build's
status word is derived beside the record, whose ``to_public`` shows it; ``status`` says what the words
mean) and ``hooks/build_state.py`` <-> ``hooks/store_choice.py`` (the hook knows nothing of the order
that chooses a store; ``store_for`` is the order's). Every import counts, those under
``TYPE_CHECKING`` and those inside functions too: each is a dependency a reader must follow.
Real: the package's own source, parsed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_imagebuild"


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its source. ``from X import Y`` is
    an edge to ``X.Y`` when that is a module; a module's own parent packages are not edges (Python
    imports them first for every module, which is no design choice)."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in known and t != name and not name.startswith(f"{t}."))
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm): each is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_imports_no_circle() -> None:
    assert [sorted(group) for group in circles(import_graph())] == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_reading_a_spec_loads_no_target() -> None:
    """The spec reads the registry at DAG parse time; the target contract and the clouds' code
    (their SDKs) load only when a milestone runs."""
    code = (
        "import sys, airflow_provider_imagebuild.spec.pipeline as s; "
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_imagebuild.targets.')))"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert got.stdout.strip() == "['airflow_provider_imagebuild.targets.registry']"
