"""A course notebook's kernel helps a student: a cell run too early names the cell to run first, and warnings
are shown without this machine's folders.

``NameError: name 'trainer' is not defined`` becomes ``... not defined. `trainer` is set by the 6th code cell
(under "1. Warm-up ...", starting `t0 = time.perf_counter()`): run the cells above this one first``. The cell
is found by reading the notebook the kernel runs (JupyterLab tells the kernel its path) and noting which
code cell first binds each name; nothing in the notebooks has to declare it.

`make lab` starts its kernels with this extension (``--ext=mmgap.hints``), so it works from the first cell
a student runs; every notebook's parameter check (`mmgap.experiments.check_params`) installs it too.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgap import paths

_KERNEL_CELL = re.compile(r"ipykernel_\d+|/ipython-input-|<ipython-input-")
_ORDINAL = {1: "first", 2: "second", 3: "third"}


@dataclass(frozen=True)
class CellRef:
    """Where a name is first bound: the code cell's position, its section heading, first line and tags."""

    index: int  # 1-based among code cells
    heading: str
    first_line: str
    tags: tuple[str, ...] = ()

    def describe(self) -> str:
        """``the 6th code cell (under "1. Warm-up", starting `t0 = ...`)``; the parameters cell by its name."""
        if "parameters" in self.tags:
            return "the parameters cell (the first code cell)"
        ordinal = _ORDINAL.get(self.index, f"{self.index}th")
        where = [f'under "{self.heading}"'] if self.heading else []
        if "validation" in self.tags:
            where.insert(0, "the parameter check")
        if self.first_line:
            where.append(f"starting `{self.first_line}`")
        return f"the {ordinal} code cell" + (f" ({', '.join(where)})" if where else "")


def bound_names(source: str) -> set[str]:
    """Names a cell binds at module level: assignments, imports, def/class, for/with targets."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)  # %magics and !shell lines become Python
    except ImportError:  # outside IPython: plain Python cells only
        pass
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def where_defined(cells: list[dict[str, Any]]) -> dict[str, CellRef]:
    """For each name bound by a notebook's code cells, the first cell that binds it (cells as in nbformat)."""
    found: dict[str, CellRef] = {}
    heading, index = "", 0
    for cell in cells:
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            titles = [line.lstrip("#").strip() for line in source.splitlines() if line.startswith("#")]
            heading = titles[-1] if titles else heading
            continue
        if cell["cell_type"] != "code":
            continue
        index += 1
        lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        first = lines[0] if lines else ""
        first = first if len(first) <= 60 else first[:57] + "..."
        ref = CellRef(index, heading, first, tuple(cell.get("metadata", {}).get("tags", [])))
        for name in bound_names(source):
            found.setdefault(name, ref)
    return found


def hint(name: str, notebook: str | Path | None) -> str | None:
    """What to run first when `name` is not defined, from the notebook file; None when it does not bind it."""
    cells = _read_cells(notebook)
    ref = where_defined(cells).get(name) if cells else None
    if ref is None:
        return None
    return (f"`{name}` is set by {ref.describe()}: run the cells above this one first "
            "(Run > Run All Above Selected Cell).")


def _read_cells(notebook: str | Path | None) -> list[dict[str, Any]]:
    """The cells of a notebook file (.ipynb, or a paired .py source through jupytext); [] when unreadable."""
    if notebook is None:
        return []
    path = Path(notebook)
    if not path.suffix:  # a course notebook's name, e.g. "04_adaptive" or "04"
        found = sorted(paths.NOTEBOOKS_DIR.glob(f"{path.name}*.ipynb"))
        path = found[0] if found else path
    if not path.is_file():
        return []
    try:
        if path.suffix == ".ipynb":  # plain JSON: fast (jupytext takes seconds to import)
            return list(json.loads(path.read_text(encoding="utf-8"))["cells"])
        import jupytext  # a paired source opened as a notebook

        return [dict(c) for c in jupytext.read(path).cells]
    except Exception:  # a half-saved or foreign file: no hint rather than a second error
        return []


# ------------------------------------------------------------------------------------------------ in a kernel
_STATE: dict[str, Any] = {"notebook": None, "installed": False}


def _current_notebook(shell: Any) -> str | Path | None:
    """The notebook this kernel runs: JupyterLab's session path (``__session__``), else the course notebook
    named by `install`."""
    session = shell.user_ns.get("__session__") if shell is not None else None
    if isinstance(session, str) and session:
        here = Path.cwd() / Path(session).name  # the kernel runs in the notebook's folder
        if here.is_file():
            return here
    return _STATE["notebook"]


def _on_name_error(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> None:
    """IPython's handler for NameError: the usual traceback, its message extended with the cell to run first."""
    name = getattr(value, "name", None)
    text = hint(name, _current_notebook(shell)) if name else None
    if text and value.args and text not in str(value.args[0]):
        value.args = (f"{value.args[0]}. {text}", *value.args[1:])
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)


def format_warning(message: Any, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """A warning as one line, its place without this machine's folders (``mmgap/method.py:69``, ``cell:3``)."""
    return f"{shown_source(filename)}:{lineno}: {category.__name__}: {message}\n"


def shown_source(filename: str) -> str:
    """A source file as a notebook shows it: ``cell`` for a notebook cell, the package path for a library."""
    if _KERNEL_CELL.search(filename):
        return "cell"
    path = Path(filename)
    if "site-packages" in path.parts:
        return "/".join(path.parts[path.parts.index("site-packages") + 1:])
    shown = paths.shown(path) if path.is_absolute() else filename
    return path.name if shown.startswith(".../") else shown


def install(shell: Any = None, notebook: str | Path | None = None) -> bool:
    """Install the hints in the running IPython kernel (idempotent); False outside IPython."""
    if notebook is not None:
        _STATE["notebook"] = notebook
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    if not _STATE["installed"]:
        shell.set_custom_exc((NameError,), _on_name_error)
        warnings.formatwarning = format_warning
        _STATE["installed"] = True
    return True


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mmgap.hints`` (and ``--ext=mmgap.hints``, as `make lab` starts its kernels)."""
    install(ipython)
