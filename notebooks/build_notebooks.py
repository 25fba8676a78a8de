"""Build the course notebooks (``NN_name.ipynb``) from their reviewable sources ``src/NN_name.py``.

    python notebooks/build_notebooks.py            # rebuild every notebook that has a source
    python notebooks/build_notebooks.py 02 04      # rebuild only these (numbers or names)
    python notebooks/build_notebooks.py --check    # exit 1 when a committed notebook differs from its source

Sources use the "percent" cell format (as in jupytext, which is not a dependency): a line ``# %%`` starts a
code cell, ``# %% [markdown]`` a Markdown cell whose lines start with ``# ``, and ``# %% tags=["parameters"]``
the papermill parameters cell. Notebooks are written without outputs (execution_count None, outputs []).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def parse_cells(text: str) -> list[nbformat.NotebookNode]:
    """Cells of a percent-format source, in order."""
    cells: list[nbformat.NotebookNode] = []
    kind, tags, lines = None, [], []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.split("\n"))
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.splitlines():
        m = CELL.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source file (ids are derived from the position so rebuilds are stable)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = parse_cells(source.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{source.stem[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        raise ValueError(f"{source.name}: expected exactly one cell tagged 'parameters', found {len(params)}")
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check compare) every notebook that has a source in ``src/``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("names", nargs="*", help="notebook numbers or names (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted((HERE / "src").glob("[0-9][0-9]_*.py")):
        if args.names and not any(source.stem.startswith(n) for n in args.names):
            continue
        target = HERE / f"{source.stem}.ipynb"
        text = nbformat.writes(build(source)) + "\n"
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date (run python notebooks/build_notebooks.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
