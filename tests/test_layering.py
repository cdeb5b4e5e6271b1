"""Dependencies point one way (docs/design.md, "Layers"): no import cycle among proxy's modules, and the
plain data types at the bottom import nothing of ours above them.

Every import counts, wherever it is written (inside a function, under TYPE_CHECKING): a lazy import is
still a dependency. Importing `a.b.c` first runs the package `a.b`'s __init__, so a module also depends
on its package: a package __init__ that imports its own submodules closes a cycle with each of them.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BOTTOM = frozenset({
    "proxy.exchange",  # the state of one request, and Saving
    "proxy.upstream_types",  # the description of one upstream
    "proxy.accounting.usage",  # tokens one request used
})


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "proxy").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that a file imports, explicitly, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    found.add(f"{node.module}.{alias.name}")
                elif node.module in modules:
                    found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write the absolute module path")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph = {name: imports_of(path, modules) for name, path in modules.items()}
    for name in modules:
        package = name.rpartition(".")[0]
        if package in modules:  # the package's __init__ runs before the module
            graph[name].add(package)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph()) == []


def test_bottom_modules_import_only_bottom_modules() -> None:
    modules = module_files()
    upward = {name: sorted(imports_of(modules[name], modules) - BOTTOM) if name in modules else ["(no such module)"]
              for name in sorted(BOTTOM)}
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
