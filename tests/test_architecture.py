"""The module map of docs/architecture.md holds: no import cycles, each module imports only the layers
below it.

The contracts live in pyproject.toml ([tool.importlinter]); `lint-imports` checks them from the repo root.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

from mmgap import paths

ROOT = paths.REPO_ROOT


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contracts_are_kept() -> None:
    """`lint-imports`: no module imports one that imports it back, and the layers hold (see pyproject.toml)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_every_module_of_the_package_has_a_layer() -> None:
    """A new top-level module must be placed in the layers, or the layers contract would not constrain it."""
    layers = next(c for c in _contracts() if c["type"] == "layers" and "containers" not in c)["layers"]
    placed = [m.strip() for layer in layers for m in layer.split("|")]
    assert len(placed) == len(set(placed)), "a module is listed in two layers"
    package = ROOT / "mmgap"
    modules = {f"mmgap.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"mmgap.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules == set(placed), (f"missing from the layers: {sorted(modules - set(placed))}; "
                                    f"listed but absent: {sorted(set(placed) - modules)}")
    cycles = [c for c in _contracts() if c["type"] == "acyclic_siblings"]
    assert cycles and cycles[0]["ancestors"] == ["mmgap"], "the no-cycle contract must cover the whole package"


def test_experiments_submodules_all_have_a_layer() -> None:
    contract = next(c for c in _contracts() if c.get("containers") == ["mmgap.experiments"])
    placed = {m.strip() for layer in contract["layers"] for m in layer.split("|")}
    present = {p.stem for p in (ROOT / "mmgap" / "experiments").glob("*.py") if p.stem != "__init__"}
    assert placed == present


def test_the_notebooks_public_names_are_importable_from_experiments() -> None:
    """The notebooks call `experiments.<name>`: every name the sources use is exported by the package."""
    import re

    from mmgap import experiments

    used: set[str] = set()
    for src in (ROOT / "notebooks" / "src").glob("*.py"):
        used |= set(re.findall(r"\b(?:ex|experiments)\.([A-Za-z_]\w*)", src.read_text(encoding="utf-8")))
    assert used, "no experiments.<name> call found in the notebook sources"
    import inspect

    missing = [n for n in used if n not in experiments.__all__ and not inspect.ismodule(getattr(experiments, n, None))]
    assert not missing, missing


def test_strategies_use_only_what_the_trainer_view_promises() -> None:
    """Every ``trainer.<name>`` in a strategy (the method's and the baselines') is a member of TrainerView."""
    import ast
    import typing

    from mmgap.strategy import TrainerView

    allowed = set(typing.get_type_hints(TrainerView)) | {n for n in vars(TrainerView) if not n.startswith("_")}
    files = [ROOT / "mmgap" / "method.py", *sorted((ROOT / "mmgap" / "baselines").glob("*.py"))]
    used: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) or isinstance(n, ast.FunctionDef)):
            args = getattr(cls, "args", None)
            if args is None or "trainer" not in [a.arg for a in args.args]:
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trainer":
                    used.setdefault(node.attr, set()).add(path.name)
    assert used, "no trainer.<name> found: the scan is broken"
    extra = {name: sorted(where) for name, where in used.items() if name not in allowed}
    assert not extra, f"strategies use trainer members TrainerView does not name: {extra}"


def test_names_imported_by_notebooks_and_benchmarks_exist() -> None:
    """Every ``from mmgap.X import Y`` in the notebook sources and benchmarks resolves (a rename updates them)."""
    import ast
    import importlib
    import importlib.util

    files = [*sorted((ROOT / "notebooks" / "src").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    checked = 0
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mmgap":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                        f"{path.relative_to(ROOT)}: {node.module} has no {alias.name}")
                    checked += 1
    assert checked > 20
