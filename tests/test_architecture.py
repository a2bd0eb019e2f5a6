"""The architecture, checked from the source: data -> models -> analyses -> reports, one way.

Walking the syntax tree of every module of data/, models/, analyses/ and reports/ (imports inside functions
included), these tests assert that imports point only to the left, that only the command-line room of analyses/
imports reports/, that the exact layer never imports PyMC, PyTensor or ArviZ, that analysis modules hold no
console formatting, that no project module is loaded by name through importlib, that no two modules share a
name, and that no PyMC transform the project defines has an underscore in its name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("data", "models", "analyses", "reports", "api")  # left to right; api/ is the top-level isletbayes
CLI_ROOM = ROOT / "analyses" / "cli"
EXACT_LAYER = ("mixtures", "operating_characteristics", "graft_link", "prior_panel", "validation",
               "normal_endpoint_design", "durability_multistate")
MCMC_PACKAGES = ("pymc", "pytensor", "arviz", "arviz_base", "arviz_stats", "arviz_plots", "nutpie")
CONSOLE_PACKAGES = ("typer", "rich", "click")


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module name imported by ``path`` (absolute imports; relative ones resolved) with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["isletbayes", *path.relative_to(ROOT).parent.parts]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
            out += [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "isletbayes" and parts[1] in LAYERS else None


ALL = [(layer, path) for layer in LAYERS for path in modules(layer)]


@pytest.mark.parametrize("layer, path", ALL, ids=[str(p.relative_to(ROOT)) for _, p in ALL])
def test_imports_point_only_to_the_left(layer, path):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    in_cli = CLI_ROOM in path.parents or path.parent == CLI_ROOM
    if in_cli:
        allowed.add("reports")  # the command line composes analyses and the report
    wrong = [(m, line) for m, line in imports(path) if layer_of(m) and layer_of(m) not in allowed]
    assert not wrong, f"{path.relative_to(ROOT)} imports to the right: {wrong}"


def test_only_the_command_line_imports_reports():
    offenders = [(str(p.relative_to(ROOT)), m) for p in modules("analyses") if CLI_ROOM not in p.parents
                 and p.parent != CLI_ROOM for m, _ in imports(p) if layer_of(m) == "reports"]
    assert not offenders


@pytest.mark.parametrize("name", EXACT_LAYER)
def test_the_exact_layer_never_imports_mcmc_packages(name):
    path = ROOT / "models" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"models/{name}.py is not part of this version")
    wrong = [(m, line) for m, line in imports(path) if m.split(".")[0] in MCMC_PACKAGES]
    assert not wrong, f"models/{name}.py imports {wrong}"
    # and nothing it imports from the project does either
    for module, _ in imports(path):
        if layer_of(module) == "models" and module.split(".")[2] not in EXACT_LAYER:
            pytest.fail(f"models/{name}.py imports {module}, which is not in the exact layer")


@pytest.mark.parametrize("path", [p for p in modules("analyses") if CLI_ROOM not in p.parents
                                  and p.parent != CLI_ROOM], ids=lambda p: p.name)
def test_analysis_modules_hold_no_console_formatting(path):
    wrong = [(m, line) for m, line in imports(path) if m.split(".")[0] in CONSOLE_PACKAGES]
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: console output belongs to analyses/cli/"


@pytest.mark.parametrize("layer, path", ALL, ids=[str(p.relative_to(ROOT)) for _, p in ALL])
def test_no_project_module_is_loaded_by_name(layer, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in ("import_module", "__import__"), (
                f"{path.relative_to(ROOT)}:{node.lineno} loads a module by name; import it instead")


def test_no_two_modules_share_a_name():
    seen: dict[str, list[str]] = {}
    for layer in LAYERS:
        for path in modules(layer):
            if path.name == "__init__.py":
                continue
            seen.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not shared, f"modules sharing a name: {shared}"


def test_no_transform_name_has_an_underscore():
    """PyMC names a transformed value ``<variable>_<transform name>__`` and recovers the variable's name by dropping
    the last three '_'-separated pieces (``pymc.util.get_untransformed_name``), so a transform named with an
    underscore breaks ``compute_log_likelihood`` and ``compute_log_prior`` for every model that uses it (as
    ``normal_scores`` once did for every model with a mixture prior)."""
    found, bad = set(), []
    for layer in LAYERS:
        for path in modules(layer):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                if not any(b.endswith("Transform") for b in bases):
                    continue
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name"
                                                             for t in stmt.targets)
                            and isinstance(stmt.value, ast.Constant)):
                        found.add(node.name)
                        if "_" in stmt.value.value:
                            bad.append(f"{path.relative_to(ROOT)}:{stmt.lineno} {node.name}: {stmt.value.value!r}")
    assert {"HalfNormalScoresTransform", "NormalScoresSplineTransform"} <= found, found
    assert not bad, bad
