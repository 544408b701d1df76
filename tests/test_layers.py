"""The layers hold: import-linter's contracts (pyproject.toml) are kept. `make lint` runs
them too; here they fail the suite as well, with import-linter's report."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


FLOORS = ("mlops_portal.core", "mlops_portal.overview", "deployments.serving")


def _floor(module: str) -> str:
    """The app or floor a module belongs to (the shell is mlops_portal's remainder)."""
    for floor in FLOORS:
        if module == floor or module.startswith(floor + "."):
            return floor
    return module.split(".")[0]


def test_no_import_cycle_crosses_an_app_or_a_floor():
    """Cycles inside one app are its own business; one spanning two would tie them. The
    layers contract covers the five layers; this also covers the shell, via grimp."""
    import grimp

    graph = grimp.build_graph("mlops_portal", "deployments", "monitoring", "docs_app")
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    crossing = [
        sorted(cycle)
        for cycle in _strongly_connected(imports)
        if len({_floor(module) for module in cycle}) > 1
    ]
    assert crossing == []


def _strongly_connected(imports: dict[str, set[str]]) -> list[set[str]]:
    """Kosaraju's algorithm, iterative: the groups of modules that import each other."""
    order, seen = [], set()
    for start in imports:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(imports[start]))]
        while stack:
            module, pending = stack[-1]
            following = next((m for m in pending if m not in seen), None)
            if following is None:
                order.append(module)
                stack.pop()
            else:
                seen.add(following)
                stack.append((following, iter(imports[following])))
    importers: dict[str, set[str]] = {m: set() for m in imports}
    for module, imported in imports.items():
        for other in imported:
            importers[other].add(module)
    groups, placed = [], set()
    for start in reversed(order):
        if start in placed:
            continue
        group, stack = set(), [start]
        placed.add(start)
        while stack:
            module = stack.pop()
            group.add(module)
            for other in importers[module] - placed:
                placed.add(other)
                stack.append(other)
        groups.append(group)
    return groups
