"""Repo-root-relative paths that resolve the same from any working directory (notebooks included)."""

from __future__ import annotations

import os
from pathlib import Path


def _find_repo_root() -> Path:
    """The folder holding pyproject.toml above this package (an editable install), else the cwd."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "mmgap").is_dir():
            return candidate
    return Path.cwd()


REPO_ROOT: Path = _find_repo_root()
DATA_DIR: Path = REPO_ROOT / "data"
OUTPUTS_DIR: Path = REPO_ROOT / "outputs"
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"


def runs_root() -> Path:
    """Where runs are written: ``$MMGAP_RUNS_DIR`` when set (tests use a temporary one), else ``runs/``."""
    env = os.environ.get("MMGAP_RUNS_DIR")
    return resolve(env) if env else REPO_ROOT / "runs"


RUNS_DIR: Path = REPO_ROOT / "runs"


def resolve(path: str | Path) -> Path:
    """An absolute path: relative paths are taken from the repo root, not the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p)


def shown(path: str | Path) -> str:
    """A path as a notebook prints it, without this machine's folders: ``runs/smoke/04_adaptive`` (from the repo
    root), ``$MMGAP_RUNS_DIR/smoke/...`` (a runs folder set elsewhere), else ``.../<last two parts>``."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    bases = [(REPO_ROOT, "")]
    if os.environ.get("MMGAP_RUNS_DIR"):
        bases.insert(0, (runs_root(), "$MMGAP_RUNS_DIR"))
    for base, label in bases:
        try:
            rel = p.resolve().relative_to(base.resolve())
        except ValueError:
            continue
        return "/".join(part for part in (label, rel.as_posix()) if part and part != ".") or "."
    return ".../" + "/".join(p.parts[-2:])


def run_dir(*parts: str) -> Path:
    """A folder under the runs root (created), e.g. ``run_dir("demo", "04_adaptive", "seed0")``."""
    d = runs_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
