"""Structure figures of the package: modules, import edges inside it (top-level and in functions), import
cycles and the depth of the import graph. ``python tools/import_graph.py [SRC_DIR]`` (default: src/qrelkit).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> dict[str, set[str]]:
    modules = {module_name(root, p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                names = [f"{target}.{a.name}" for a in node.names]
                found = [n for n in names if n in modules] or ([target] if target in modules else [])
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name in modules]
            else:
                continue
            graph[mod].update(f for f in found if f != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def depth(graph: dict[str, set[str]]) -> int:
    memo: dict[str, int] = {}

    def d(v: str, seen: frozenset[str]) -> int:
        if v in memo:
            return memo[v]
        deeper = [d(w, seen | {v}) for w in graph[v] if w not in seen]
        memo[v] = 1 + max(deeper, default=0)
        return memo[v]

    return max(d(v, frozenset()) for v in graph)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "src/qrelkit")
    graph = imports(root)
    found = cycles(graph)
    edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} modules, {edges} import edges, depth {depth(graph)}, {len(found)} cycles")
    for c in found:
        print("  cycle:", " ↔ ".join(c))


if __name__ == "__main__":
    main()
