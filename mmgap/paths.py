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


def run_dir(*parts: str) -> Path:
    """A folder under the runs root (created), e.g. ``run_dir("demo", "04_adaptive", "seed0")``."""
    d = runs_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
