"""From a sweep's rows to what a reader sees: mean ± std tables, plain-language verdicts, a bar chart.

Every comparison is honest about its noise: a difference counts as clear only when it exceeds the
seed-to-seed spread (or, for the paired comparison with the control, the std of the per-seed differences),
and a single seed makes no claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mmgap import atomic, baselines
from mmgap.data.manifest import TIERS
from mmgap.experiments.settings import CONTROL, OURS, UNIMODAL, method_label
from mmgap.results import format_mean_std, mean_std_table

METRIC_LABELS = {"acc": "Accuracy (%)", "f1": "Macro F1 (%)", "acc_a": "Audio acc. (%)",
                 "acc_v": "Visual acc. (%)", "acc_v_clean": "Visual acc., clean (%)",
                 "acc_v_hard": "Visual acc., hard (%)", "acc_v_corrupt": "Visual acc., corrupt (%)"}


def table_of(rows: pd.DataFrame, group: str | Sequence[str],
             metrics: Sequence[str] = ("acc", "f1")) -> pd.DataFrame:
    """Mean ± std over seeds in percent, one row per group, in the order of the sweep."""
    cols = [group] if isinstance(group, str) else list(group)
    table = mean_std_table(rows, cols, list(metrics), decimals=2, scale=100.0)
    if "error" not in rows or not rows["error"].notna().any():
        return table
    # A failed run is no result: ``n`` counts the runs that finished, ``failed`` names the others and why.
    keys = [tuple(r) for r in table[cols].itertuples(index=False)]
    lost: dict[tuple, list[str]] = {}
    for _, r in rows[rows["error"].notna()].iterrows():
        lost.setdefault(tuple(r[c] for c in cols), []).append(f"seed {r['seed']}: {r['error']}" if "seed" in r
                                                              else str(r["error"]))
    table["n"] = [n - len(lost.get(k, [])) for n, k in zip(table["n"], keys, strict=True)]
    table["failed"] = ["; ".join(lost.get(k, [])) for k in keys]
    return table


def failures(rows: pd.DataFrame) -> str:
    """One line per failed run (``method, seed k: error``), or "" when every run finished."""
    if "error" not in rows:
        return ""
    bad = rows[rows["error"].notna()]
    return "\n".join(f"{method_label(r['method']) if 'method' in r else r.get('setting', '?')}, seed {r.get('seed')}: "
                     f"{r['error']}" for _, r in bad.iterrows())


def purification_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table VII: data kept and test accuracy / macro-F1 (%) per threshold, mean ± std over seeds."""
    data = mean_std_table(rows, ["row"], ["data_pct"], decimals=1)
    scores = table_of(rows, "row", metrics=("acc", "f1"))
    table = pd.DataFrame({"w0 threshold": scores["row"], "Data (%)": data["data_pct"],
                          "Accuracy (%)": scores["acc"], "Macro F1 (%)": scores["f1"]})
    kept = [c for c in (f"kept_{t}" for t in TIERS) if c in rows and rows[c].notna().any()]
    if kept:  # ground truth (embedded data): which clips each threshold keeps
        shares = mean_std_table(rows.assign(**{c: 100.0 * rows[c] for c in kept}), ["row"], kept, decimals=1)
        for c in kept:
            table[f"Kept, {c[5:]} (%)"] = shares[c]
    table["n"] = scores["n"]
    return table


def verdict(rows: pd.DataFrame, ours: Sequence[str] = tuple(OURS),
            metrics: Sequence[str] = ("acc", "f1")) -> str:
    """Plain-language comparison of ours against the best baseline per metric, from the per-seed rows.

    A difference counts as clear only when it exceeds the larger of the two stds over seeds: with three seeds
    a finer test would claim more than the data can carry.
    """
    failed = failures(rows)
    lost = [f"FAILED runs, left out of every mean below: {line}" for line in failed.splitlines()]
    df = rows[~rows["method"].isin(UNIMODAL)].copy()
    if "error" in df:
        df = df[df["error"].isna()]
    base = df[~df["method"].isin(ours)]
    mine = df[df["method"].isin(ours)]
    if mine.empty or base.empty:
        return "\n".join([*lost, "Only one side of the comparison was run (ours or the baselines): no verdict."])
    lines: list[str] = lost
    for metric in metrics:
        means = df.groupby("method", sort=False)[metric].agg(["mean", "std", "count"])
        b = means.loc[base["method"].unique()].sort_values("mean", ascending=False)
        o = means.loc[mine["method"].unique()].sort_values("mean", ascending=False)
        bo, bb = o.index[0], b.index[0]
        diff = 100.0 * (o.loc[bo, "mean"] - b.loc[bb, "mean"])
        spread = 100.0 * max(_nz(o.loc[bo, "std"]), _nz(b.loc[bb, "std"]))
        name = METRIC_LABELS.get(metric, metric).replace(" (%)", "")
        mo, mb = 100 * o.loc[bo, "mean"], 100 * b.loc[bb, "mean"]
        n = int(min(o.loc[bo, "count"], b.loc[bb, "count"]))
        head = (f"{name} ({n} seed{'s' if n != 1 else ''}): ours at its best, {method_label(bo)}, {mo:.2f} % "
                f"vs the best baseline, {method_label(bb)}, {mb:.2f} %")
        if o.loc[bo, "count"] < 2 or b.loc[bb, "count"] < 2:
            lines.append(f"{head}: difference {diff:+.2f} points from a single seed, so no claim either way.")
        elif abs(diff) <= spread:
            lines.append(f"{head}: difference {diff:+.2f} points, within the seed-to-seed spread "
                         f"({spread:.2f}): a tie.")
        elif diff > 0:
            lines.append(f"{head}: ours wins by {diff:.2f} points, more than the seed-to-seed spread "
                         f"({spread:.2f}).")
        else:
            lines.append(f"{head}: ours loses by {-diff:.2f} points, more than the seed-to-seed spread "
                         f"({spread:.2f}).")
        beaten = [m for m in b.index if b.loc[m, "mean"] > o.loc[bo, "mean"]]
        if beaten:
            names = ", ".join(method_label(m) for m in beaten)
            lines.append(f"  baselines above ours on {name.lower()}: {names}")
    return "\n".join(lines)


FAMILY_LABELS = {"reference": "References", "modality-level": "Modality-level", "sample-level": "Sample-level",
                 "control": "Control", "ours": "Ours"}
"""Table II's group headings, by `mmgap.baselines.FAMILIES` value (in `mmgap.baselines.FAMILY_ORDER`)."""


def family_of(method: str) -> str:
    """A Table II method's group (`mmgap.baselines.FAMILIES`; the control arm is its own group)."""
    family = "control" if method == CONTROL else baselines.FAMILIES.get(method)
    if family is None:
        raise ValueError(f"method {method!r} has no group in mmgap.baselines.FAMILIES: add it there "
                         f"(one of {', '.join(baselines.FAMILY_ORDER)})")
    return family


def grouped_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-seed rows with a ``family`` column, ordered by group (FAMILY_ORDER), then as the sweep ran."""
    df = rows.copy()
    df["family"] = [family_of(m) for m in df["method"]]
    rank = {f: i for i, f in enumerate(baselines.FAMILY_ORDER)}
    return df.sort_values("family", key=lambda col: col.map(rank), kind="stable").reset_index(drop=True)


def grouped_table(rows: pd.DataFrame, metrics: Sequence[str] = ("acc", "f1")) -> pd.DataFrame:
    """Table II: mean ± std over seeds in percent, one row per method, grouped (``family``: its heading)."""
    table = table_of(grouped_rows(rows), ["family", "label"], metrics)
    table["family"] = table["family"].map(FAMILY_LABELS)
    return table


def group_verdicts(rows: pd.DataFrame, ours: Sequence[str] = tuple(OURS),
                   metrics: Sequence[str] = ("acc", "f1")) -> pd.DataFrame:
    """Ours at its best against the best row of every other group, per metric (differences in points).

    The best row of a group and ours' best are chosen by mean over seeds. Against the control, which starts
    from the same warm-up checkpoint per seed, the comparison is paired: the mean and std of the per-seed
    differences; against the other groups, the difference of means and the larger of the two stds. A
    difference is ``clear`` only when it exceeds that spread, and two seeds are the least for any claim.
    """
    df = grouped_rows(rows)
    if "error" in df:
        df = df[df["error"].isna()]
    out: list[dict[str, Any]] = []
    mine = df[df["method"].isin(ours)]
    if mine.empty:
        return pd.DataFrame(out)
    for metric in metrics:
        stats = df.groupby("method", sort=False)[metric].agg(["mean", "std", "count"])
        o = stats.loc[mine["method"].unique()].sort_values("mean", ascending=False, kind="stable")
        bo = o.index[0]
        for family in baselines.FAMILY_ORDER:
            members = df.loc[df["family"] == family, "method"].unique()
            members = [m for m in members if m not in ours]
            if not members:
                continue
            b = stats.loc[members].sort_values("mean", ascending=False, kind="stable")
            bb = b.index[0]
            paired = family == "control"
            if paired:
                a = df[df["method"] == bo].set_index("seed")[metric]
                c = df[df["method"] == bb].set_index("seed")[metric]
                d = 100.0 * (a - c).dropna()
                diff, spread, n = float(d.mean()), _nz(d.std()), int(len(d))
            else:
                diff = 100.0 * (o.loc[bo, "mean"] - b.loc[bb, "mean"])
                spread = 100.0 * max(_nz(o.loc[bo, "std"]), _nz(b.loc[bb, "std"]))
                n = int(min(o.loc[bo, "count"], b.loc[bb, "count"]))
            kind = compare(diff, spread, n)
            word = {"one seed": "one seed, no claim", "tie": "within the seed spread: a tie",
                    "clear": "ours better" if diff > 0 else "ours worse"}[kind]
            out.append({"metric": metric, "group": FAMILY_LABELS[family], "best of group": method_label(bb),
                        "group mean": 100.0 * b.loc[bb, "mean"], "group std": 100.0 * _nz(b.loc[bb, "std"]),
                        "ours": method_label(bo), "ours mean": 100.0 * o.loc[bo, "mean"],
                        "ours std": 100.0 * _nz(o.loc[bo, "std"]), "difference": diff, "spread": spread,
                        "paired": paired, "n": n, "verdict": word})
    return pd.DataFrame(out)


def describe_group_verdicts(table: pd.DataFrame, rows: pd.DataFrame | None = None) -> str:
    """`group_verdicts` in words, one line per (metric, group), with the failed runs and the noise caveat."""
    lines = [] if rows is None else [f"FAILED runs, left out of every mean below: {line}"
                                     for line in failures(rows).splitlines()]
    if table.empty:
        return "\n".join([*lines, "Ours was not among the runs (or every run of it failed): no verdict."])
    for metric, part in table.groupby("metric", sort=False):
        first = part.iloc[0]
        name = METRIC_LABELS.get(str(metric), str(metric)).replace(" (%)", "")
        lines.append(f"{name}: ours at its best, {first['ours']}, "
                     f"{format_mean_std(first['ours mean'], first['ours std'])} %, against the best row of each group:")
        for _, r in part.iterrows():
            how = "paired over seeds (same warm-up), std of the differences" if r["paired"] else "larger std"
            lines.append(f"  {r['group']}: {r['best of group']} {format_mean_std(r['group mean'], r['group std'])} %,"
                         f" ours {r['difference']:+.2f} points (spread {r['spread']:.2f}, {how}; n = {r['n']}): "
                         f"{r['verdict']}")
    absent = [FAMILY_LABELS[f] for f in baselines.FAMILY_ORDER
              if f != "ours" and FAMILY_LABELS[f] not in set(table["group"])]
    if absent:
        lines.append(f"No row of this run in: {', '.join(absent)} (not run, or every run failed).")
    n = int(table["n"].min())
    lines.append(f"Noise: {n} seed{'s' if n != 1 else ''} per row. A difference counts only when it exceeds the "
                 "seed-to-seed spread; with so few seeds the std is itself a rough estimate, so 'a tie' means the "
                 "runs cannot tell the two apart, not that they are equal.")
    return "\n".join(lines)


def compare(diff: float, spread: float, n: int) -> str:
    """'clear' when |diff| exceeds the seed spread (both in points), else 'tie'; 'one seed' for n < 2."""
    if n < 2:
        return "one seed"
    return "tie" if abs(diff) <= spread else "clear"


def describe_ablations(rows: pd.DataFrame, full_key: str) -> str:
    """Per table: each row's accuracy difference from the full model and whether it beats the seed spread."""
    full = rows[rows["setting"] == full_key].drop_duplicates("seed")["acc"]
    if full.empty:
        return "The full model was not among the runs: no comparison."
    f_mean, f_std = 100 * full.mean(), 100 * _nz(full.std())
    lines = [f"Full model: test accuracy {format_mean_std(f_mean, 100 * full.std())} % "
             f"over {len(full)} seed(s)."]
    start = "warm_acc" if "warm_acc" in rows else None  # the last warm-up epoch: where every arm starts
    warm = (pd.to_numeric(rows[rows["setting"] == full_key].drop_duplicates("seed")[start], errors="coerce").dropna()
            if start else pd.Series(dtype=float))
    if len(warm):
        lines.append(f"Its warm-up alone (Eq. 10), at the last warm-up epoch where both stages meet: "
                     f"{format_mean_std(100 * warm.mean(), 100 * warm.std())} %; the full model adds "
                     f"{100 * (full.mean() - warm.mean()):+.2f} points to its own start.")
    for table in dict.fromkeys(rows["table"]):
        part = rows[rows["table"] == table]
        stats = part.groupby("row", sort=False).agg(setting=("setting", "first"), mean=("acc", "mean"),
                                                   std=("acc", "std"), n=("acc", "size"))
        lines.append(f"Table {table}:")
        best = stats["mean"].idxmax()
        for label, st in stats.iterrows():
            if st["setting"] == full_key:
                continue
            diff, spread = 100 * (st["mean"] - full.mean()), max(100 * _nz(st["std"]), f_std)
            kind = compare(diff, spread, int(min(st["n"], len(full))))
            word = {"tie": "within the seed spread", "one seed": "one seed only, no claim",
                    "clear": "better than the full model" if diff > 0 else "worse than the full model"}[kind]
            own = ""
            if start:  # each arm against its own starting point (an Adam row starts from an Adam warm-up)
                runs = part[part["row"] == label]
                gain = 100 * (runs["acc"] - pd.to_numeric(runs[start], errors="coerce")).mean()
                if math.isfinite(gain):
                    own = f"; {gain:+.2f} points from its own start"
            lines.append(f"  {label}: {100 * st['mean']:.2f} % ({diff:+.2f} points, {word}{own})")
        top = stats[stats["mean"] == stats["mean"].max()]
        if len(top) > 1:
            lines.append(f"  best rows (tied): {', '.join(map(str, top.index))}")
        else:
            is_full = stats.loc[best, "setting"] == full_key
            which = " (the full model)" if is_full else " (not the full model)"
            lines.append(f"  best row: {best}{which}")
    return "\n".join(lines)


PHENOMENA: tuple[tuple[str, str, str, str, float], ...] = (
    # (label, start column, end column, direction the paper expects, display scale)
    ("π1, imbalanced weight", "start_pi1", "end_pi1", "down", 1.0),
    ("μ1, raw gap", "start_mu1_raw", "end_mu1_raw", "down", 1.0),
    ("|μ1 − μ0|, raw gap", "start_mu_sep", "end_mu_sep", "down", 1.0),
    ("mean gap, raw", "start_gap_mean", "end_gap_mean", "down", 1.0),
    ("visual acc., hard (%)", "warm_acc_v_hard", "last_acc_v_hard", "up", 100.0),
    ("visual acc. (%)", "warm_acc_v", "last_acc_v", "up", 100.0),
    ("fused acc. (%)", "warm_acc", "last_acc", "up", 100.0),
)
"""What notebook 04 checks on one seed and 05 over seeds: the mixture fitted on the last model (location-
labelled components) and the test accuracy of the last epoch, against the warm-up's and the control's."""


COMPONENT_COLUMNS = ("start_pi1", "start_mu1_raw", "start_mu_sep")
"""PHENOMENA rows read from the mixture's components: comparable only while the labelling is stable (`resplit`)."""


def resplit(start_pi1: float, end_pi1: float, start_mu0: float, start_mu1: float, end_mu0: float,
            end_mu1: float) -> bool:
    """Whether the two mixture components changed identity between two fits (Eq. 8), so π1, μ1 are not comparable.

    They re-split when the imbalanced weight crosses one half (the minority component became the majority, or
    back) or when either end mean lies nearer the other start mean than its own (the components swapped).
    """
    vals = (start_pi1, end_pi1, start_mu0, start_mu1, end_mu0, end_mu1)
    if any(v is None or not math.isfinite(float(v)) for v in vals):
        return False
    crossed = (start_pi1 - 0.5) * (end_pi1 - 0.5) < 0
    swapped = (abs(end_mu0 - start_mu0) > abs(end_mu0 - start_mu1)
               or abs(end_mu1 - start_mu1) > abs(end_mu1 - start_mu0))
    return bool(crossed or swapped)


def _resplit_of(r: Any) -> bool:
    """`resplit` from a run's row (``start_*``/``end_*`` fields of `phenomena_fields`)."""
    keys = ("start_pi1", "end_pi1", "start_mu0_raw", "start_mu1_raw", "end_mu0_raw", "end_mu1_raw")
    if not all(k in r for k in keys):
        return False
    return resplit(*(float(r[k]) if r[k] is not None else float("nan") for k in keys))


def phenomena_table(rows: pd.DataFrame, full_key: str, control_key: str) -> pd.DataFrame:
    """Adaptive (`full_key`) vs control (`control_key`) over seeds: start, ends, paired difference, verdict.

    Both arms of a seed start from the same warm-up, so the start values are the adaptive run's and the
    comparison is paired: a difference counts as clear when its mean over seeds exceeds its std. A quantity
    "falls" or "rises" as the paper expects only when it does so from the arm's own start *and* against the
    control; the mixture's π1 and μ1 are compared only on seeds whose components kept their identity
    (`resplit`). Accuracies are those of the last epoch on both sides.
    """
    full = rows[rows["setting"] == full_key].drop_duplicates("seed").set_index("seed")
    ctrl = rows[rows["setting"] == control_key].drop_duplicates("seed").set_index("seed")
    seeds = full.index.intersection(ctrl.index)
    if len(seeds) == 0:
        return pd.DataFrame()
    full, ctrl = full.loc[seeds].copy(), ctrl.loc[seeds].copy()
    same_measure = all(full[c].eq(ctrl[c]).all() for c in ("gap", "mixture", "posterior") if c in full and c in ctrl)
    split = pd.Series([_resplit_of(full.loc[s]) for s in seeds], index=seeds)
    out = []
    for label, start, end, direction, scale in PHENOMENA:
        if start not in full or end not in full or end not in ctrl or full[start].isna().all():
            continue
        if start.startswith("start_") and not same_measure:  # the two arms' mixtures are not comparable
            continue
        s, a, c = (scale * pd.to_numeric(x, errors="coerce") for x in (full[start], full[end], ctrl[end]))
        d, own = a - c, a - s
        n = int(d.notna().sum())
        sign = -1.0 if direction == "down" else 1.0
        spread, own_spread = _nz(d.std()), _nz(own.std())
        if start in COMPONENT_COLUMNS and split.any():
            verdict = (f"components re-split on {int(split.sum())} of {len(split)} seed(s) (π1 crossed one half or "
                       "the means swapped): not comparable")
        elif n < 2:
            verdict = "one seed, no claim"
        elif abs(d.mean()) <= spread:
            verdict = "within the seed spread of the control"
        elif sign * d.mean() < 0:
            verdict = "against the paper's expectation (vs the control)"
        elif sign * own.mean() <= own_spread:
            verdict = "beats the control, but not its own start: " + ("did not fall" if sign < 0 else "did not rise")
        else:
            verdict = "as the paper expects (from its start and vs the control)"
        out.append({"quantity": label, "expected": "falls" if direction == "down" else "rises",
                    "start (warm-up)": format_mean_std(s.mean(), s.std()),
                    "adaptive, end": format_mean_std(a.mean(), a.std()),
                    "control, end": format_mean_std(c.mean(), c.std()),
                    "adaptive − start": format_mean_std(own.mean(), own.std()),
                    "adaptive − control": format_mean_std(d.mean(), d.std()), "n": n, "verdict": verdict})
    return pd.DataFrame(out)


def arm_verdicts(row: Mapping[str, Any], row_c: Mapping[str, Any], n_test: int | Mapping[str, int] | None = None,
                 ) -> pd.DataFrame:
    """One seed, adaptive (`row`) vs control (`row_c`): each PHENOMENA quantity from its start and vs the control.

    Accuracies are compared at the last epoch and again at each arm's validation-selected epoch (the test
    accuracy notebook 04 reports), the same epoch on both sides; a difference below twice the binomial
    error of one accuracy on `n_test` clips is called noise; `n_test` may map ``"all"`` and each visual tier to
    its number of test clips, so that a tier's accuracy gets its own, larger, error. Component statistics (π1,
    μ1) are compared only when the components kept their identity (`resplit`). Every verdict is one seed's.
    """
    counts = dict(n_test) if isinstance(n_test, Mapping) else {"all": n_test}
    split = _resplit_of(row)
    items = [(q, s, e, e, d, k, "last") for q, s, e, d, k in PHENOMENA]
    items += [(q.replace(" (%)", "") + " (%)", s, e[len("last_"):], e[len("last_"):], d, k, "selected")
              for q, s, e, d, k in PHENOMENA if e.startswith("last_") and e[len("last_"):] in row]
    out = []
    for quantity, start, end, end_c, direction, scale, epoch in items:
        if end not in row or end_c not in row_c or row.get(start) is None:
            continue
        s, a, c = (scale * float(x) for x in (row[start], row[end], row_c[end_c]))
        sign = -1.0 if direction == "down" else 1.0
        from_start, vs_control = sign * (a - s) > 0, sign * (a - c) > 0
        noise = None
        tier = next((t for t in TIERS if end.endswith(f"_{t}")), "all")
        n = counts.get(tier, counts.get("all"))  # a tier without its own count: the whole split's (a lower bound)
        if scale == 100.0 and n:
            noise = 2.0 * 100.0 * math.sqrt(max(a, 1e-9) / 100.0 * (1.0 - a / 100.0) / n)
        if start in COMPONENT_COLUMNS and split:
            word = "not comparable: the components re-split (π1 crossed one half or the means swapped)"
        elif noise is not None and abs(a - c) <= noise:
            word = f"a tie: |adaptive − control| within the noise of one accuracy (±{noise:.1f})"
        elif from_start and vs_control:
            word = "yes, from its start and vs the control"
        elif vs_control:
            word = "beats the control, not its own start"
        elif from_start:
            word = "moves from its start, but the control moves as far"
        else:
            word = "no"
        out.append({"quantity": quantity, "epoch": epoch, "expected": "falls" if direction == "down" else "rises",
                    "start": s, "adaptive": a, "control": c, "from start": bool(from_start),
                    "vs control": bool(vs_control), "verdict (one seed)": word})
    return pd.DataFrame(out)


def describe_purification(rows: pd.DataFrame) -> str:
    """Each τ's accuracy against the 100 % fine-tuning baseline, with its data fraction and seed spread."""
    stats = rows.groupby("tau", sort=True).agg(row=("row", "first"), mean=("acc", "mean"), std=("acc", "std"),
                                               n=("acc", "size"), data=("data_pct", "mean"))
    if 0.0 not in stats.index:
        return "The 100 % baseline was not run: no comparison."
    b = stats.loc[0.0]
    base_text = format_mean_std(100 * b["mean"], 100 * b["std"])
    lines = [f"Control (the warm-up fine-tuned on 100 % of the training data): {base_text} % "
             f"over {int(b['n'])} seed(s)."]
    if "warmup_acc" in rows and rows["warmup_acc"].notna().any():
        w = rows.drop_duplicates("seed")["warmup_acc"].astype(float)
        lines.append(f"The warm-up alone (before any fine-tuning): "
                     f"{format_mean_std(100 * w.mean(), 100 * w.std())} %.")
    wins = 0
    for tau, st in stats.drop(index=0.0).iterrows():
        if not math.isfinite(st["mean"]):
            lines.append(f"  w0 ≥ {tau:.2f}: {st['data']:.1f} % of the data, too few clips to fine-tune "
                         "(no result)")
            continue
        diff = 100 * (st["mean"] - b["mean"])
        spread = 100 * max(_nz(st["std"]), _nz(b["std"]))
        kind = compare(diff, spread, int(min(st["n"], b["n"])))
        wins += kind == "clear" and diff > 0
        word = {"tie": "within the seed spread", "one seed": "one seed only, no claim",
                "clear": "clearly better" if diff > 0 else "clearly worse"}[kind]
        lines.append(f"  w0 ≥ {tau:.2f}: {st['data']:.1f} % of the data, {100 * st['mean']:.2f} % accuracy "
                     f"({diff:+.2f} points, {word})")
    n_tau = len(stats) - 1
    lines.append(f"Purification beats training on all data beyond the seed spread at {wins} of {n_tau} "
                 "thresholds.")
    return "\n".join(lines)


def _nz(x: Any) -> float:
    return 0.0 if x is None or not math.isfinite(float(x)) else float(x)


def plot_method_bars(rows: pd.DataFrame, metrics: Sequence[str] = ("acc", "f1"),
                     path: str | Path | None = None) -> Any:
    """Bar chart of mean accuracy and macro-F1 per method with ± 1 std error bars over seeds (Table II)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    long = rows.melt(id_vars=["label"], value_vars=list(metrics), var_name="metric", value_name="value")
    long["value"] = 100.0 * long["value"]
    long["metric"] = long["metric"].map(lambda m: METRIC_LABELS.get(m, m).replace(" (%)", ""))
    order = list(dict.fromkeys(rows["label"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(order) + 2), 4.0))
    sns.barplot(data=long, x="label", y="value", hue="metric", order=order, errorbar="sd", capsize=0.15,
                ax=ax)
    ax.set_xlabel("method")
    ax.set_ylabel("test score (%)")
    ax.set_title("Table II on this dataset: mean ± 1 std over seeds")
    lo = max(0.0, float(long["value"].min()) - 10.0)
    ax.set_ylim(lo, min(100.0, float(long["value"].max()) + 5.0))
    ax.tick_params(axis="x", rotation=30)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    fig.tight_layout()
    if path is not None:
        atomic.save_figure(fig, path, dpi=120)
    return fig
