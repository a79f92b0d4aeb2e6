"""The house's layering: no import cycle inside `mocha`, deployment never imports the benchmark package.

Imports are read from the source (every `import` statement, also those inside functions), so a cycle held
together by a lazy import fails here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mocha

SRC = Path(mocha.__file__).resolve().parent.parent


def module_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module → the `mocha` modules it imports. `from pkg import sub` counts as importing `pkg.sub` only."""
    mods: dict[str, Path] = {}
    for p in (src / "mocha").rglob("*.py"):
        parts = list(p.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        package = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & mods.keys()
                graph[m].update(subs)
                if target in mods and len(subs) < len(node.names):
                    graph[m].add(target)
        graph[m].discard(m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def reachable(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_no_import_cycle_inside_mocha():
    assert cycles(module_graph()) == []


def test_cycle_finder_sees_a_lazy_cycle(tmp_path):
    pkg = tmp_path / "mocha"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from mocha.b import x\n")
    (pkg / "b.py").write_text("def x():\n    from mocha.a import y\n")
    (pkg / "c.py").write_text("from mocha import a\n")
    assert cycles(module_graph(tmp_path)) == [["mocha.a", "mocha.b"]]


def test_deployment_does_not_import_the_benchmark_package():
    graph = module_graph()
    deploy = [m for m in graph if m.startswith(("mocha.personalize", "mocha.export", "mocha.models", "mocha.core",
                                                 "mocha.track", "mocha.serve"))]
    leaked = {m for m in reachable(graph, deploy) if m.startswith("mocha.evaluate")}
    assert leaked == set()


def test_import_mocha_stays_light():
    heavy = "('torch', 'ultralytics', 'transformers', 'cv2')"
    code = f"import sys, mocha; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_start_does_not_import_torch():
    # every verb registers from its config dataclass; the work (and torch) is imported when a verb runs
    code = "import sys, mocha.cli; print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
