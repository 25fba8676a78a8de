"""Wall time of every notebook at the `demo` preset, run headless with papermill (issue 7).

A thin front end to `mmgap.run_notebooks.run_all`: it executes ``notebooks/NN_*.ipynb`` in order (each
standalone, as ``make demo`` does), prints a table of seconds per notebook with the total, and writes
``runs/benchmarks/demo_walltime.json``. The executed copies go to ``outputs/walltime_<preset>/``.

    python benchmarks/demo_walltime.py                 # every notebook at demo (minutes each on 2 cores)
    python benchmarks/demo_walltime.py --only 02,04    # a subset
    python benchmarks/demo_walltime.py --fresh         # as on a fresh clone: new data and runs folders
    python benchmarks/demo_walltime.py --quick         # smoke preset, first notebook only (the smoke test)
    python benchmarks/demo_walltime.py --report outputs/walltimes.json   # the table of an earlier `make demo`

Exits with status 1, naming them, when a notebook fails (the others still run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mmgap import atomic, paths
from mmgap.run_notebooks import find_notebooks, run_all


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--preset", default="demo", choices=["smoke", "demo", "paper"])
    ap.add_argument("--only", default=None, help="notebook numbers or names, comma-separated (e.g. 02,04)")
    ap.add_argument("--notebooks", default=None, help="folder of the notebooks (default: notebooks/)")
    ap.add_argument("--out", default=None,
                    help="folder for the executed notebooks (default: outputs/walltime_<preset>)")
    ap.add_argument("--json", default=None, help="results file (default: <runs>/benchmarks/demo_walltime.json)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                    help="extra notebook parameter, e.g. -p seed 1 (value parsed as JSON when it parses)")
    ap.add_argument("--quick", action="store_true", help="smoke preset and only the first notebook (the smoke test)")
    ap.add_argument("--fresh", action="store_true",
                    help="time a fresh clone: the notebooks get an empty temporary data_dir and runs folder, so the "
                         "dataset, caches and checkpoints are all rebuilt (default: reuse what data/ and runs/ hold)")
    ap.add_argument("--report", default=None,
                    help="run nothing: print the table of an existing walltimes.json (written by make demo / "
                         "mmgap.run_notebooks into its output folder)")
    return ap.parse_args(argv)


def print_table(preset: str, results: dict[str, dict[str, Any]]) -> float:
    """Seconds and minutes per notebook with the total; returns the total seconds."""
    total = sum(float(r["seconds"]) for r in results.values())
    print(f"\nwall time per notebook at preset {preset!r} ({os.cpu_count()} CPUs):")
    print(f"  {'notebook':32s} {'seconds':>9s} {'minutes':>8s}  status")
    for name, r in results.items():
        print(f"  {name:32s} {r['seconds']:9.1f} {r['seconds'] / 60:8.2f}  {r['status']}")
    print(f"  {'total':32s} {total:9.1f} {total / 60:8.2f}")
    return total


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks, print the table, write the JSON; returns the exit status."""
    args = parse_args(argv)
    if args.report:
        path = paths.resolve(args.report)
        if not path.is_file():
            print(f"{path} does not exist: run `make demo` (or this script without --report) first", file=sys.stderr)
            return 2
        data = json.loads(path.read_text())
        if "notebooks" not in data:
            print(f"{path} has no 'notebooks' entry: expected the walltimes.json of mmgap.run_notebooks",
                  file=sys.stderr)
            return 2
        print_table(data.get("preset", "?"), data["notebooks"])
        return 0
    preset = "smoke" if args.quick else args.preset
    nb_dir = paths.resolve(args.notebooks) if args.notebooks else paths.NOTEBOOKS_DIR
    only = [args.only] if args.only else None
    found = find_notebooks(nb_dir, only)
    if not found:
        print(f"no notebooks named NN_*.ipynb{f' matching {args.only}' if args.only else ''} in {nb_dir}: "
              "nothing to time (check --notebooks / --only)", file=sys.stderr)
        return 2
    if args.quick and not args.only:
        only = [found[0].stem]
    out_dir = paths.resolve(args.out) if args.out else paths.OUTPUTS_DIR / f"walltime_{preset}"
    params = {name: _value(value) for name, value in args.parameter}
    json_out = Path(args.json) if args.json else paths.runs_root() / "benchmarks" / "demo_walltime.json"
    fresh_dir, saved_runs_env = None, os.environ.get("MMGAP_RUNS_DIR")
    if args.fresh:
        fresh_dir = Path(tempfile.mkdtemp(prefix="mmgap_fresh_"))
        params.setdefault("data_dir", str(fresh_dir / "data"))
        os.environ["MMGAP_RUNS_DIR"] = str(fresh_dir / "runs")  # the notebooks' kernels inherit it
        print(f"fresh run: data and runs under {fresh_dir} (removed at the end)", flush=True)
    t0 = time.perf_counter()
    try:
        results = run_all(preset, out_dir, only, params, notebooks_dir=nb_dir)
    finally:
        if fresh_dir is not None:
            shutil.rmtree(fresh_dir, ignore_errors=True)
            if saved_runs_env is None:
                os.environ.pop("MMGAP_RUNS_DIR", None)
            else:
                os.environ["MMGAP_RUNS_DIR"] = saved_runs_env
    wall = time.perf_counter() - t0
    total = print_table(preset, results)
    payload = {"benchmark": "demo_walltime", "preset": preset, "quick": args.quick, "fresh": args.fresh,
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
               "python": platform.python_version(), "load_average_at_end": list(os.getloadavg()),
               "notebooks": results, "total_seconds": total, "wall_seconds": wall, "executed_in": str(out_dir)}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(json_out, json.dumps(payload, indent=2) + "\n")
    print(f"wrote {json_out}")
    failed = [n for n, r in results.items() if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (executed copies in {out_dir})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
