"""The package's folders are its architecture: imports run downward only (docs/architecture.md).

Every import in ``blackbox_cam/`` (module level, inside functions and under ``TYPE_CHECKING``
alike: a lazy import is still a dependency) is resolved to the module it names, and that
module's *room* (``io``, ``model``, ``methods``, ``jobs.gate``, ...) must sit on a lower layer
than the importer's, or be the same room. Rooms on one layer never import each other, so two
jobs cannot grow into one. The test also plants an upward import to prove it catches one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "blackbox_cam"

#: The layers, lowest first (the same table as docs/architecture.md).
LAYERS: dict[str, int] = {
    "errors": 0, "_version": 0,
    "io": 1, "metrics": 1,
    "model": 2, "pictures": 2,
    "gradients": 3,
    "methods": 4,
    "explainer": 5, "jobs.executors": 5,  # where per-image work runs (in-process / Ray), below every job
    "jobs.dataset": 6,
    "jobs": 7,  # jobs/__init__ and every command's folder: jobs.compare, jobs.gate, ...
    "testing": 8, "api": 8,  # public Python helpers: pytest assertions, the one-call explain()
    "cli": 9,
    "": 10,  # blackbox_cam/__init__.py, the public facade
}


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def room(module: str) -> str:
    """``blackbox_cam.jobs.gate.job`` -> ``jobs.gate``; ``blackbox_cam.model.runtime`` -> ``model``."""
    parts = module.split(".")[1:]
    if not parts:
        return ""
    if parts[0] == "jobs" and len(parts) > 1:
        return f"jobs.{parts[1]}"
    return parts[0]


def layer(r: str) -> int:
    return LAYERS[r] if r in LAYERS else LAYERS[r.split(".")[0]]


def imports(source: str, module: str, is_pkg: bool, known: set[str]) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import of a package module in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in known else target))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return [(ln, t) for ln, t in out if t == "blackbox_cam" or t.startswith("blackbox_cam.")]


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import that climbs a layer or crosses to a sibling room; ``sources`` maps a module
    name to ``(source text, is_package)``."""
    known = set(sources)
    bad = []
    for module, (source, is_pkg) in sorted(sources.items()):
        mine = room(module)
        for line, target in imports(source, module, is_pkg, known):
            theirs = room(target)
            if theirs == mine or layer(theirs) < layer(mine):
                continue
            bad.append(f"{module}:{line} imports {target} ({theirs or 'the package facade'}, layer "
                       f"{layer(theirs)}) from {mine or 'the facade'} (layer {layer(mine)})")
    return bad


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    out = {}
    for path in root.rglob("*.py"):
        name, is_pkg = module_name(path, root)
        out[name] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def test_every_room_has_a_layer():
    rooms = {room(m) for m in package_sources()}
    missing = [r for r in rooms if r not in LAYERS and r.split(".")[0] not in LAYERS]
    assert not missing, f"rooms without a layer in LAYERS (and docs/architecture.md): {missing}"


def test_imports_run_downward_only():
    bad = violations(package_sources())
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("module, line", [
    ("blackbox_cam.model.planted", "from ..jobs.dataset import expand_inputs"),        # climbs
    ("blackbox_cam.methods.planted", "def f():\n    from ..explainer import explain_image"),  # lazy, still climbs
    ("blackbox_cam.jobs.gate.planted", "from ..compare import compare_images"),         # sibling job
    ("blackbox_cam.io.planted", "from blackbox_cam import __version__"),               # the facade
])
def test_a_planted_upward_import_is_caught(module, line):
    sources = package_sources()
    assert not violations(sources)
    sources[module] = (line + "\n", False)
    bad = violations(sources)
    assert len(bad) == 1 and bad[0].startswith(module), bad


def test_no_module_imports_one_that_imports_it_back():
    """No import cycles between modules (a package's ``__init__`` re-exporting its children is
    not a cycle: children never import their own package's ``__init__``)."""
    sources = package_sources()
    known = set(sources)
    graph = {m: {t for _, t in imports(s, m, p, known) if t in known and t != m} for m, (s, p) in sources.items()}
    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    assert not cycles, f"modules that import each other: {cycles}"


def test_docs_architecture_draws_the_tree():
    """Every folder of the package and every module at its top (and in ``jobs/``) is named in the
    diagram of docs/architecture.md, so the drawing cannot drift from the tree."""
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    diagram = doc.split("```")[1]
    missing = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or path.name == "__init__.py" or rel.parts[0] == "gradients" and len(rel.parts) > 1:
            continue
        if path.is_dir() and len(rel.parts) <= 2:
            if f"{path.name}/" not in diagram:
                missing.append(f"{rel}/")
        elif path.suffix == ".py" and path.name not in diagram and (
                len(rel.parts) == 1 or len(rel.parts) == 2 and rel.parts[0] in ("jobs", "model", "explainer", "pictures", "io")
                or len(rel.parts) == 3 and rel.parts[0] == "jobs"):
            missing.append(str(rel))
    assert not missing, f"docs/architecture.md's diagram does not name: {missing}"
