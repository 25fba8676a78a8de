"""Run the course's notebooks headless with papermill and report the wall time of each.

    python -m mmgap.run_notebooks --preset demo --out outputs [--only 04] [-p seed 1] [--threads 1]

Runs every ``notebooks/[0-9][0-9]_*.ipynb`` present, in order, with ``preset`` injected into the cell tagged
``parameters`` and the working directory set to ``notebooks/``; writes the executed copies into ``--out``,
prints the wall time of each and saves them in ``<out>/walltimes.json``. Exits non-zero, naming the
notebooks that failed, when any does (the others still run: each notebook is standalone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmgap import atomic, paths

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_.+\.ipynb$")


def find_notebooks(notebooks_dir: Path, only: Sequence[str] | None = None) -> list[Path]:
    """Notebooks named ``NN_*.ipynb`` in order; ``only`` keeps those whose number or name matches."""
    found = sorted(p for p in notebooks_dir.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if only:
        wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
        found = [p for p in found if any(p.name.startswith(w) or p.stem == w for w in wanted)]
    return found


def parse_value(text: str) -> Any:
    """A ``-p`` value read as papermill's CLI reads it (True, False, None, int, float), plus JSON lists
    and objects (``[0, 1, 2]``); anything else stays a string."""
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def run_all(
    preset: str,
    out_dir: Path,
    only: Sequence[str] | None = None,
    parameters: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    fail_fast: bool = False,
) -> dict[str, dict[str, Any]]:
    """Execute the notebooks; returns ``{name: {"seconds": s, "status": "ok" | "failed", "error": ...}}``."""
    import papermill as pm  # imported here so that ``--help`` is instant

    notebooks_dir = notebooks_dir or paths.NOTEBOOKS_DIR
    os.environ.setdefault("MMGAP_PROGRESS", "text")  # headless kernels: text bars (mmgap.progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = find_notebooks(notebooks_dir, only)
    if not notebooks:
        print(f"no notebooks matching {list(only or ['NN_*.ipynb'])} in {notebooks_dir}: nothing to run")
    params = {"preset": preset, **(parameters or {})}
    results: dict[str, dict[str, Any]] = {}
    for nb in notebooks:
        print(f"[run_notebooks] {nb.name} (preset={preset}) ...", flush=True)
        start = time.perf_counter()
        entry: dict[str, Any] = {"status": "ok"}
        try:
            pm.execute_notebook(
                str(nb),
                str(out_dir / nb.name),
                parameters=params,
                cwd=str(notebooks_dir),
                progress_bar=False,
                log_output=False,
            )
        except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
            entry = {"status": "failed", "error": f"{type(exc).__name__}: {str(exc).strip()[-2000:]}"}
        entry["seconds"] = round(time.perf_counter() - start, 2)
        results[nb.name] = entry
        print(f"[run_notebooks] {nb.name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
        _write_walltimes(out_dir, preset, results)
        if fail_fast and entry["status"] != "ok":
            break
    return results


def _write_walltimes(out_dir: Path, preset: str, results: dict[str, dict[str, Any]]) -> Path:
    path = out_dir / "walltimes.json"
    payload = {
        "preset": preset,
        "notebooks": results,
        "total_seconds": round(sum(r["seconds"] for r in results.values()), 2),
    }
    return atomic.write_json(path, payload, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo", choices=["smoke", "demo", "paper"])
    parser.add_argument("--out", default="outputs", help="folder for executed notebooks (relative: repo root)")
    parser.add_argument("--only", action="append", help="notebook numbers or names, e.g. --only 04 or 01,02")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                        help="extra notebook parameter (as with papermill -p), e.g. -p seed 1")
    parser.add_argument("--notebooks", default=None, help="folder of the notebooks (default: notebooks/)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per notebook kernel (sets OMP_NUM_THREADS / MKL_NUM_THREADS); on a "
                             "shared or busy CPU, 1 avoids thread oversubscription, which can slow training 10x")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads {args.threads}: give a positive number of threads")
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # inherited by the kernels papermill starts
    out_dir = paths.resolve(args.out)
    extra = {name: parse_value(value) for name, value in args.parameter}
    nb_dir = paths.resolve(args.notebooks) if args.notebooks else None
    results = run_all(args.preset, out_dir, args.only, extra, notebooks_dir=nb_dir, fail_fast=args.fail_fast)
    total = sum(r["seconds"] for r in results.values())
    print("\nwall time per notebook:")
    for name, r in results.items():
        print(f"  {name:<28} {r['seconds']:8.1f} s  {r['status']}")
    print(f"  {'total':<28} {total:8.1f} s   (saved in {out_dir / 'walltimes.json'})")
    failed = [name for name, r in results.items() if r["status"] != "ok"]
    if failed:
        for name in failed:
            print(f"\nFAILED {name}: {results[name]['error']}\n  executed copy: {out_dir / name}", file=sys.stderr)
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
