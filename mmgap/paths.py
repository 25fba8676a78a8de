"""Repo-root-relative paths that resolve the same from any working directory (notebooks included)."""

from __future__ import annotations

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
RUNS_DIR: Path = REPO_ROOT / "runs"
OUTPUTS_DIR: Path = REPO_ROOT / "outputs"
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"


def resolve(path: str | Path) -> Path:
    """An absolute path: relative paths are taken from the repo root, not the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p)


def run_dir(*parts: str) -> Path:
    """A folder under runs/ (created), e.g. ``run_dir("demo", "04_adaptive", "seed0")``."""
    d = RUNS_DIR.joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d
