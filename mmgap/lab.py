"""`make lab`: JupyterLab on the student's working copies of the course, so running and editing never touches the
tracked notebooks or their reviewed sources.

    python -m mmgap.lab            # work/ (git-ignored): a copy of each notebooks/NN_*.ipynb, made on first use
    python -m mmgap.lab --course   # the tracked notebooks/ themselves, paired with notebooks/src (course authors)

A copy is made once (its ``language_info`` stamped with this Python's version, as the kernel fills it in, so
opening it does not mark it modified); later runs leave it alone unless the course's notebook changed since: then a copy
whose
cells the student has not edited is replaced by the new one (its outputs go; run it again), and an edited copy
is kept, with a note saying how to get the new one. JupyterLab listens on 127.0.0.1 only, adds
``--allow-root`` when run as root, and starts its Python kernels with `mmgap.hints` (a cell run too early
names the cell to run first). Other arguments go to ``jupyter lab`` (e.g. ``--no-browser``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mmgap import paths

WORK_DIR: Path = paths.REPO_ROOT / "work"
STATE_FILE = ".course-copies.json"  # {notebook: digest of the course's cells it was copied from}
KERNELS_DIR: Path = paths.REPO_ROOT / ".cache" / "jupyter"  # git-ignored; put first on JUPYTER_PATH


def cells_digest(notebook: Path) -> str:
    """A digest of a notebook's cell types and sources: outputs, counts, ids and metadata do not count."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    text = json.dumps([(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                       for c in cells])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def refresh_copies(course_dir: Path | None = None, work_dir: Path | None = None) -> list[str]:
    """Make or update the working copies of the course's ``NN_*.ipynb``; returns what was done, one line each."""
    course_dir, work_dir = course_dir or paths.NOTEBOOKS_DIR, work_dir or WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / STATE_FILE
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    notes = []
    for course in sorted(course_dir.glob("[0-9][0-9]_*.ipynb")):
        copy, digest = work_dir / course.name, cells_digest(course)
        shown = paths.shown(copy)
        if not copy.is_file():
            _copy(course, copy)
            notes.append(f"{shown}: new working copy")
        elif state.get(course.name) == digest:
            continue
        elif state.get(course.name) is not None and cells_digest(copy) == state[course.name]:
            _copy(course, copy)
            notes.append(f"{shown}: updated to the course's new version (its outputs are cleared: run it again)")
        else:
            notes.append(f"{shown}: kept (you edited it); the course's version has changed since: rename or "
                         f"delete your copy and run `make lab` again to get it")
            continue
        state[course.name] = digest
    tmp = state_path.with_name(state_path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(state_path)
    return notes


def _copy(course: Path, copy: Path) -> None:
    """Copy a course notebook, its language_info stamped with this Python's version: the kernel fills in the same,
    so JupyterLab does not mark the copy modified on opening it."""
    import nbformat

    nb = nbformat.read(course, as_version=4)
    nb.metadata.setdefault("language_info", {"name": "python"})["version"] = platform.python_version()
    tmp = copy.with_name(copy.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(copy)


def write_kernel_spec(root: Path | None = None) -> Path:
    """A ``python3`` kernel spec that loads `mmgap.hints`, under `root`/kernels (first on JUPYTER_PATH)."""
    folder = (root or KERNELS_DIR) / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext=mmgap.hints"],
            "display_name": "Python 3 (ipykernel)", "language": "python", "metadata": {"debugger": True}}
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    return folder


def lab_command(root: Path, extra: Sequence[str] = (), is_root: bool | None = None) -> list[str]:
    """The ``jupyter lab`` command line: `root` served on 127.0.0.1, ``--allow-root`` for uid 0."""
    is_root = (hasattr(os, "geteuid") and os.geteuid() == 0) if is_root is None else is_root
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1"]
    return cmd + (["--allow-root"] if is_root else []) + list(extra)


def lab_env(kernels_root: Path | None = None) -> dict[str, str]:
    """The environment for JupyterLab: our kernel spec first on JUPYTER_PATH."""
    root = str(kernels_root or KERNELS_DIR)
    rest = os.environ.get("JUPYTER_PATH")
    return {**os.environ, "JUPYTER_PATH": os.pathsep.join([root, rest]) if rest else root}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (`make lab`, `make lab-course`); returns JupyterLab's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", action="store_true",
                        help="open the tracked notebooks/ (paired with notebooks/src) instead of the working copies")
    args, extra = parser.parse_known_args(argv)
    if args.course:
        root = paths.NOTEBOOKS_DIR
        print("JupyterLab on notebooks/: saving writes the tracked notebook and its reviewed source in src/")
    else:
        root = WORK_DIR
        for line in refresh_copies():
            print(line)
        print(f"JupyterLab on {paths.shown(root)}/ (git-ignored working copies; the course is in notebooks/)")
    write_kernel_spec()
    try:
        return subprocess.call(lab_command(root, extra), env=lab_env())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
