"""The import graph of numstab: no loops, no upward imports, and each heavy dependency in its
one layer (only cli imports click, only the terminal exporter rich, only the png exporter
matplotlib, only the reference layer mpmath). Imports inside functions count too."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "numstab"

#: Lowest first. A module may import modules of its own layer or below, never above. A module
#: in a subpackage belongs to the subpackage's layer. A new module goes in one of these lines.
LAYERS = [
    ["numstab"],  # the version
    ["numstab.errors"],
    ["numstab.formats", "numstab.results", "numstab.inputs", "numstab.limits", "numstab.outputs"],
    ["numstab.steps", "numstab.pieces"],
    ["numstab.validate", "numstab.grids"],
    ["numstab.functions"],  # the functions as data: records, kernels
    ["numstab.masks"],
    ["numstab.metrics"],
    ["numstab.reference"],  # exact values (mpmath)
    ["numstab.causes"],
    ["numstab.engine", "numstab.cells", "numstab.locate", "numstab.workers", "numstab.adapters",
     "numstab.libraries", "numstab.stream", "numstab.dask_run", "numstab.vector"],
    ["numstab.tables"],  # the table model
    ["numstab.exporters"],  # rendering (rich, matplotlib)
    ["numstab.commands"],
    ["numstab.testing", "numstab.cli"],
]
ONLY = {"click": ("numstab.cli",), "rich": ("numstab.exporters.terminal",),
        "matplotlib": ("numstab.exporters.png",), "mpmath": ("numstab.reference",),
        "dask": ("numstab.dask_run",), "distributed": ("numstab.dask_run",)}


def _modules() -> dict:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _graph():
    mods = _modules()
    edges, external = {}, {}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    b = ".".join(base + ([node.module] if node.module else []))
                else:
                    b = node.module
                targets = [f"{b}.{a.name}" if f"{b}.{a.name}" in mods else b for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] == "numstab":
                    if t != m:
                        edges.setdefault(m, set()).add(t)
                else:
                    external.setdefault(t.split(".")[0], set()).add(m)
    return mods, edges, external


def _layer(m: str) -> int:
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (m == prefix or m.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    if best is None:
        pytest.fail(f"{m} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[0]


def test_every_import_goes_down_or_sideways():
    _, edges, _ = _graph()
    up = [f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
          for a, bs in edges.items() for b in bs if _layer(b) > _layer(a)]
    assert not up, "\n".join(up)


def test_no_import_loops():
    _, edges, _ = _graph()
    state, loops = {}, []

    def visit(m, path):
        state[m] = 1
        for b in sorted(edges.get(m, ())):
            if state.get(b) == 1:
                loops.append(" -> ".join(path[path.index(b):] + [b]) if b in path else f"{m} -> {b}")
            elif not state.get(b):
                visit(b, path + [b])
        state[m] = 2

    for m in sorted(edges):
        if not state.get(m):
            visit(m, [m])
    assert not loops, "\n".join(loops)


def test_heavy_dependencies_stay_in_their_layer():
    _, _, external = _graph()
    for lib, allowed in ONLY.items():
        bad = sorted(m for m in external.get(lib, ()) if not any(m == a or m.startswith(a + ".")
                                                                  for a in allowed))
        assert not bad, f"{lib} imported outside {allowed}: {bad}"


def test_the_checks_see_real_imports():
    """The graph is not empty: the checks above would see a violation."""
    mods, edges, external = _graph()
    assert "numstab.engine" in mods and "numstab.reference" in edges["numstab.engine"]
    assert "numstab.cli" in external["click"] and "numstab.reference.softmax" in external["mpmath"]
    assert _layer("numstab.exporters.terminal") > _layer("numstab.tables") > _layer("numstab.engine")
