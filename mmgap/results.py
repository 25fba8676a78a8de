"""Results files: a run's ``metrics.json`` and mean ± std tables over seeds as CSV and Markdown.

Every notebook and script writes its numbers through this module, so that tables look the same everywhere:
``write_metrics`` stores one run's metrics atomically; ``mean_std_table`` turns one row per (setting, seed)
into one row per setting with "mean ± std" cells; ``save_table`` writes a table as ``.csv`` and ``.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmgap import atomic

METRICS_FILE = "metrics.json"


def to_jsonable(value: Any) -> Any:
    """Plain-JSON form of numpy / torch scalars and arrays, paths, tuples and dataclass-like dicts.

    Non-finite floats become ``None`` (JSON has no NaN) so that every reader can parse the file.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "to_dict"):
        return to_jsonable(value.to_dict())
    raise TypeError(
        f"cannot store a {type(value).__name__} in metrics.json; convert it to numbers, strings, lists or dicts"
    )


def _atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it, so readers never see half a file."""
    atomic.write_text(path, text)


def write_metrics(run_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` to ``<run_dir>/metrics.json`` atomically (sorted keys, indented); returns the path."""
    path = Path(run_dir) / METRICS_FILE
    _atomic_write_text(path, json.dumps(to_jsonable(metrics), indent=2, sort_keys=True) + "\n")
    return path


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The metrics a run wrote with `write_metrics`; a clear error when the run has none."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the notebook or script that writes this run first")
    return atomic.read_json(path, fix="delete it and re-run the run that writes it (an unfinished run is redone)")


def _as_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    return rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def summarize(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    group_cols: Sequence[str],
    value_cols: Sequence[str],
) -> pd.DataFrame:
    """Numeric mean, sample std (ddof=1) and count per group: columns ``<v>_mean``, ``<v>_std``, ``n``.

    Groups keep the order in which they first appear in ``rows`` (the order of a sweep, e.g. ρ = 1.0 … 0.8).
    """
    df = _as_frame(rows)
    if df.empty:
        raise ValueError("no rows to summarise: every run of the sweep failed or none was run")
    missing = [c for c in (*group_cols, *value_cols) if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the rows (they have: {list(df.columns)})")
    values = df[list(value_cols)].apply(pd.to_numeric, errors="coerce")
    df = pd.concat([df[list(group_cols)], values], axis=1)
    grouped = df.groupby(list(group_cols), sort=False, dropna=False) if group_cols else None
    out: list[dict[str, Any]] = []
    for key, part in (grouped if grouped is not None else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(group_cols, key, strict=True))
        for col in value_cols:
            col_values = part[col].dropna()
            row[f"{col}_mean"] = float(col_values.mean()) if len(col_values) else float("nan")
            row[f"{col}_std"] = float(col_values.std(ddof=1)) if len(col_values) > 1 else float("nan")
        row["n"] = int(len(part))
        out.append(row)
    return pd.DataFrame(out)


def format_mean_std(mean: float, std: float, decimals: int = 2) -> str:
    """ "80.65 ± 0.42"; the mean alone when there is a single run (no spread to report); "–" for no value."""
    if mean is None or not math.isfinite(mean):
        return "–"
    if std is None or not math.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def mean_std_table(
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    group_cols: Sequence[str],
    value_cols: Sequence[str],
    decimals: int = 2,
    scale: float = 1.0,
) -> pd.DataFrame:
    """One row per group with "mean ± std" cells (sample std over the group's rows, e.g. seeds) and ``n``.

    ``scale`` multiplies values first (``scale=100`` turns accuracies in [0, 1] into percent).
    """
    stats = summarize(rows, group_cols, value_cols)
    table = stats[list(group_cols)].copy()
    for col in value_cols:
        table[col] = [
            format_mean_std(m * scale, s * scale, decimals)
            for m, s in zip(stats[f"{col}_mean"], stats[f"{col}_std"], strict=True)
        ]
    table["n"] = stats["n"]
    return table


def _md_cell(value: Any) -> str:
    if isinstance(value, float):
        text = "–" if not math.isfinite(value) else f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (written here: pandas' ``to_markdown`` needs ``tabulate``)."""
    cols = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(_md_cell(c) for c in cols) + " |",
        "| " + " | ".join("---:" if num else "---" for num in numeric) + " |",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, path_stem: str | Path) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.csv`` and ``<stem>.md`` (atomically, UTF-8); returns both paths."""
    stem = Path(path_stem)
    if stem.suffix in {".csv", ".md"}:
        stem = stem.with_suffix("")
    csv_path, md_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    _atomic_write_text(csv_path, df.to_csv(index=False))
    _atomic_write_text(md_path, to_markdown(df))
    return csv_path, md_path
