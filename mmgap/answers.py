"""The instructor's answer keys: every "Try this" of notebooks 01-07, answered from the runs it asks for.

Each exercise has a key that reads what the notebooks wrote (``metrics.json``, ``runs.csv``, the shared
adaptive runs' ``result.json``) and returns the numbers that answer it with one computed sentence, or says
which run is still missing and the papermill command that makes it. Nothing is typed in: a student's runs
give the student's answers.

    python -m mmgap.answers                 # every key, on runs/ at the demo preset
    python -m mmgap.answers 04 --preset smoke
    python -m mmgap.answers --list          # the questions only
    python -m mmgap.answers --summary       # the paper's claims against what the runs find (one page)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mmgap import paths

NOISE_Z = 2.0
"""A difference counts only beyond this many binomial standard errors of one accuracy (or the seed spread)."""


@dataclasses.dataclass
class Answer:
    """The numbers that answer an exercise, one sentence, and whether the runs it needs exist (`ready`)."""

    numbers: dict[str, Any]
    text: str
    ready: bool = True


def missing(what: str, command: str) -> Answer:
    """The answer when a run is missing: what it needs and the command that makes it."""
    return Answer({}, f"not run yet: {what}. Run: {command}", ready=False)


class Runs:
    """Read access to one preset's runs folder (``runs/<preset>`` or ``$MMGAP_RUNS_DIR/<preset>``)."""

    def __init__(self, preset: str = "demo", root: str | Path | None = None) -> None:
        self.preset = preset
        self.root = Path(root) if root is not None else paths.runs_root()
        self.folder = self.root / preset

    def metrics(self, notebook: str, seed: int | None = None, dataset: str = "embedded") -> dict[str, Any] | None:
        """A notebook's metrics.json (the first match for per-seed notebooks), or None when it has not run."""
        base = self.folder / notebook
        cands = [base / "metrics.json"]
        if seed is not None:
            cands += sorted(base.glob(f"{dataset}-seed{seed}/**/metrics.json"))
            cands += sorted(base.glob(f"{dataset}/metrics.json"))
        else:
            cands += sorted(base.glob("*/metrics.json")) + sorted(base.glob("*/*/metrics.json"))
        for c in cands:
            if c.is_file():
                return json.loads(c.read_text())
        return None

    def all_metrics(self, notebook: str) -> list[dict[str, Any]]:
        """Every metrics.json a notebook wrote under this preset (one per seed, dataset or setting)."""
        return [json.loads(p.read_text()) for p in sorted((self.folder / notebook).glob("**/metrics.json"))]

    def csv(self, notebook: str, name: str = "runs.csv") -> pd.DataFrame | None:
        """A sweep notebook's per-seed rows (``runs.csv``), or None."""
        p = self.folder / notebook / name
        return pd.read_csv(p) if p.is_file() else None

    @cached_property
    def adaptive(self) -> pd.DataFrame:
        """The shared adaptive and control runs (``adaptive/<setting>/seed<k>/result.json``), one row each."""
        rows = [json.loads(p.read_text()) for p in sorted((self.folder / "adaptive").glob("*/seed*/result.json"))]
        return pd.DataFrame(rows)

    def setting(self, **fields: Any) -> pd.DataFrame:
        """Adaptive rows whose setting fields equal `fields` (defaults: the full SGD-reset GMM prob-gap model)."""
        want = {"ablation": "full", "optimizer": "sgd", "reset_optimizer": True, "mixture": "gmm", "gap": "prob",
                "rho": 0.95, "posterior": "eq9", **fields}
        df = self.adaptive
        if df.empty:
            return df
        mask = pd.Series(True, index=df.index)
        for k, v in want.items():
            if v is None or k not in df:
                continue
            mask &= df[k].astype(float).sub(float(v)).abs().lt(1e-9) if isinstance(v, float) else df[k].eq(v)
        return df[mask].drop_duplicates("seed", keep="last")


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f} %"


def _mean(df: pd.DataFrame, col: str) -> float:
    return float(pd.to_numeric(df[col], errors="coerce").mean()) if col in df and len(df) else float("nan")


def _std(df: pd.DataFrame, col: str) -> float:
    v = pd.to_numeric(df[col], errors="coerce").std() if col in df and len(df) > 1 else 0.0
    return 0.0 if not math.isfinite(float(v)) else float(v)


def noise(acc: float, n: int) -> float:
    """Binomial standard error of one accuracy (fraction) on `n` test clips, as a fraction."""
    return math.sqrt(max(acc, 0.0) * max(1.0 - acc, 0.0) / max(n, 1))


def _n_test(runs: Runs) -> int:
    m = runs.metrics("01_preprocessing")
    return int(m["counts"]["test"]) if m and "counts" in m else 0


def compare_arms(a: pd.DataFrame, b: pd.DataFrame, col: str, n_test: int, name_a: str, name_b: str) -> Answer:
    """Mean of `col` over seeds for two settings, and whether the difference beats the noise (seeds or binomial)."""
    ma, mb = _mean(a, col), _mean(b, col)
    diff = ma - mb
    spread = max(_std(a, col), _std(b, col), NOISE_Z * noise((ma + mb) / 2, n_test) / math.sqrt(max(len(a), 1)))
    word = "within the noise: a tie" if abs(diff) <= spread else ("higher" if diff > 0 else "lower")
    return Answer({f"{name_a} {col}": ma, f"{name_b} {col}": mb, "difference": diff, "noise": spread,
                   "seeds": int(min(len(a), len(b)))},
                  f"{col}: {name_a} {_pct(ma)} against {name_b} {_pct(mb)} over {min(len(a), len(b))} seed(s): "
                  f"{100 * diff:+.1f} points, {word} (noise ±{100 * spread:.1f}).")


# ------------------------------------------------------------------------------------------------ the keys
def _01_reuse(r: Runs) -> Answer:
    m = r.metrics("01_preprocessing")
    if not m:
        return missing("notebook 01", "papermill notebooks/01_preprocessing.ipynb out.ipynb")
    t = m["timings"]
    return Answer({"cache_seconds": t["cache_seconds"], "total_seconds": t["total_seconds"]},
                  f"this run's cache step took {t['cache_seconds']:.1f} s (a reused cache loads in about a second; "
                  "a fresh build decodes every clip and takes far longer).")


def _01_shapes(r: Runs) -> Answer:
    here = r.metrics("01_preprocessing")
    other = Runs("smoke" if r.preset != "smoke" else "demo", r.root).metrics("01_preprocessing")
    if not here or not other:
        return missing("notebook 01 at both smoke and demo", "papermill ... -p preset smoke (and the default)")
    pair = {m["preset"]: {"clips": m["num_clips"], "audio": m["audio_shape"], "frames": m["frames_shape"]}
            for m in (here, other)}
    return Answer(pair, "; ".join(f"{p}: {v['clips']} clips, audio {v['audio']}, frames {v['frames']}"
                                  for p, v in pair.items()))


def _01_crema(r: Runs) -> Answer:
    m = r.metrics("01_preprocessing", seed=0, dataset="crema_d")
    if not m or m.get("dataset") != "crema_d":
        return missing("CREMA-D (download it first, data/README.md)",
                       "papermill notebooks/01_preprocessing.ipynb out.ipynb -p dataset crema_d "
                       "-p data_dir data/crema_d")
    return Answer({"clips": m["num_clips"], "classes": m["num_classes"], "splits": m["counts"]},
                  f"CREMA-D: {m['num_clips']} clips, {m['num_classes']} classes, splits {m['counts']}.")


def _01_listen(r: Runs) -> Answer:
    m = r.metrics("02_warmup", seed=0)
    if not m:
        return missing("notebook 02", "papermill notebooks/02_warmup.ipynb out.ipynb")
    c = m["concat"]
    return Answer({"audio acc": c["acc_a"], "visual acc, hard": c.get("acc_v_hard"),
                   "visual acc, corrupt": c.get("acc_v_corrupt")},
                  f"the concat model's audio branch alone: {_pct(c['acc_a'])} on the test clips (all tiers); its "
                  f"visual branch: hard {_pct(c.get('acc_v_hard'))}, corrupt {_pct(c.get('acc_v_corrupt'))} (chance "
                  f"{_pct(1 / 10)}): the audio tells the digit, the corrupt picture cannot.")


def _02_seed(r: Runs) -> Answer:
    a, b = r.metrics("02_warmup", seed=0), r.metrics("02_warmup", seed=1)
    if not a or not b:
        return missing("notebook 02 with seed 0 and seed 1", "papermill notebooks/02_warmup.ipynb out.ipynb -p seed 1")
    d = {f"seed {m['seed']}": {"warm-up acc": m["warmup"]["test_acc"], "visual acc": m["warmup"]["test_acc_v"]}
         for m in (a, b)}
    diff = abs(a["warmup"]["test_acc"] - b["warmup"]["test_acc"])
    return Answer(d, f"warm-up test accuracy moves by {100 * diff:.1f} points between seeds 0 and 1 "
                     f"({_pct(a['warmup']['test_acc'])} vs {_pct(b['warmup']['test_acc'])}).")


def _02_paper(r: Runs) -> Answer:
    m = Runs("paper", r.root).metrics("02_warmup", seed=0, dataset="crema_d")
    if not m:
        return missing("a GPU and CREMA-D", "papermill notebooks/02_warmup.ipynb out.ipynb -p preset paper "
                       "-p dataset crema_d -p data_dir data/crema_d")
    return Answer({"warm-up acc": m["warmup"]["test_acc"]}, f"paper preset, CREMA-D: warm-up "
                  f"{_pct(m['warmup']['test_acc'])}.")


def _02_lv(r: Runs) -> Answer:
    m = r.metrics("02_warmup", seed=0)
    if not m:
        return missing("notebook 02", "papermill notebooks/02_warmup.ipynb out.ipynb")
    c, w, v = m["concat"]["acc_v"], m["warmup"]["test_acc_v"], m["visual_only"]["acc_v"]
    return Answer({"concat visual": c, "warm-up visual": w, "visual-only": v},
                  f"visual accuracy: concat {_pct(c)}, warm-up {_pct(w)}, visual-only {_pct(v)}; L_v buys "
                  f"{100 * (w - c):+.1f} points and closes {100 * (w - c) / (v - c):.0f} % of the gap to visual-only."
                  if v > c else f"visual accuracy: concat {_pct(c)}, warm-up {_pct(w)}, visual-only {_pct(v)}.")


def _02_tier(r: Runs) -> Answer:
    m = r.metrics("02_warmup", seed=0)
    if not m:
        return missing("notebook 02", "papermill notebooks/02_warmup.ipynb out.ipynb")
    margin = {t: m["visual_only"].get(f"acc_v_{t}", float("nan")) - m["concat"].get(f"acc_v_{t}", float("nan"))
              for t in ("clean", "hard", "corrupt")}
    top = max(margin, key=lambda t: margin[t] if math.isfinite(margin[t]) else -1)
    return Answer(margin, "imbalance margin (visual-only − concat's visual branch) per tier: "
                  + ", ".join(f"{t} {100 * v:+.1f}" for t, v in margin.items())
                  + f" points; the largest is `{top}`. A rebalancing method can help only where a picture carries "
                    "the digit (clean, hard).")


def _02_file(r: Runs) -> Answer:
    m = r.metrics("02_warmup", seed=0)
    if not m:
        return missing("notebook 02", "papermill notebooks/02_warmup.ipynb out.ipynb")
    return Answer({"keys": sorted(m)}, f"metrics.json holds {len(m)} entries: {', '.join(sorted(m))}.")


def _bic(r: Runs) -> pd.DataFrame | None:
    m = r.metrics("03_gap_fitting", seed=0)
    return pd.DataFrame(m["bic_table"]) if m else None


def _03_family(r: Runs) -> Answer:
    t = _bic(r)
    if t is None:
        return missing("notebook 03", "papermill notebooks/03_gap_fitting.ipynb out.ipynb")
    t = t[t["gap"] == "prob"].set_index("mixture")
    best_bic, best_auc = t["BIC 2 comp."].idxmin(), t["AUROC w1 (Eq. 9)"].idxmax()
    return Answer({"BIC 2 comp.": t["BIC 2 comp."].to_dict(), "AUROC w1": t["AUROC w1 (Eq. 9)"].to_dict()},
                  f"prob gap: the lowest BIC is {best_bic}, the highest AUROC of w1 {best_auc} ("
                  + ", ".join(f"{k} BIC {v:.1f} / AUROC {t.loc[k, 'AUROC w1 (Eq. 9)']:.3f}"
                              for k, v in t["BIC 2 comp."].items()) + ").")


def _03_tier(r: Runs) -> Answer:
    m = r.metrics("04_adaptive", seed=0)
    if not m or "why" not in m:
        return missing("notebook 04 (its section 6 stores w1 per tier)",
                       "papermill notebooks/04_adaptive.ipynb out.ipynb")
    post = {p["tier"]: p for p in m["why"]["posterior"]}
    if not {"hard", "corrupt"} <= set(post):
        return Answer({}, "no ground-truth tiers on this dataset.", ready=False)
    h, c = post["hard"]["share flagged (w1 > 0.5)"], post["corrupt"]["share flagged (w1 > 0.5)"]
    return Answer({"flagged, hard": h, "flagged, corrupt": c},
                  f"the mixture flags {_pct(c)} of corrupt and {_pct(h)} of hard training clips: it misses the "
                  f"{'hard' if h < c else 'corrupt'} ones most. A hard clip the visual branch has learned has a small "
                  "gap, so it sits in the balanced component.")


def _03_kl(r: Runs) -> Answer:
    t = _bic(r)
    if t is None:
        return missing("notebook 03", "papermill notebooks/03_gap_fitting.ipynb out.ipynb")
    g = t[t["mixture"] == "gmm"].set_index("gap")
    return Answer({"ΔBIC": g["ΔBIC (1 − 2)"].to_dict(), "AUROC w1": g["AUROC w1 (Eq. 9)"].to_dict()},
                  f"GMM: ΔBIC prob {g.loc['prob', 'ΔBIC (1 − 2)']:.1f} vs KL {g.loc['kl', 'ΔBIC (1 − 2)']:.1f}; "
                  f"AUROC of w1 prob {g.loc['prob', 'AUROC w1 (Eq. 9)']:.3f} vs KL "
                  f"{g.loc['kl', 'AUROC w1 (Eq. 9)']:.3f}.")


def _03_seed(r: Runs) -> Answer:
    a, b = r.metrics("03_gap_fitting", seed=0), r.metrics("03_gap_fitting", seed=1)
    if not a or not b:
        return missing("notebook 03 with seeds 0 and 1", "papermill notebooks/03_gap_fitting.ipynb out.ipynb -p seed 1")
    d = {f"seed {m['seed']}": m["bic"]["delta"] for m in (a, b)}
    both = all(v > 0 for v in d.values())
    return Answer(d, f"ΔBIC (1 − 2 components): seed 0 {d['seed 0']:.1f}, seed 1 {d['seed 1']:.1f}: "
                     + ("bimodal on both seeds." if both else "not bimodal on both seeds."))


def _03_warmup(r: Runs) -> Answer:
    here, small = r.metrics("03_gap_fitting", seed=0), Runs("smoke", r.root).metrics("03_gap_fitting", seed=0)
    if not here or not small or r.preset == "smoke":
        return missing("notebook 03 at the default preset and at smoke",
                       "papermill notebooks/03_gap_fitting.ipynb out.ipynb -p preset smoke")
    return Answer({"ΔBIC, smoke": small["bic"]["delta"], f"ΔBIC, {r.preset}": here["bic"]["delta"]},
                  f"ΔBIC at smoke (a short warm-up) {small['bic']['delta']:.1f} against {here['bic']['delta']:.1f} "
                  f"at {r.preset}.")


def _04_rho(r: Runs) -> Answer:
    rows = {rho: r.setting(rho=rho) for rho in (1.0, 0.95, 0.8)}
    if any(df.empty for df in rows.values()):
        return missing("04 with rho 1.0 and 0.8 (or notebook 05's Table VI)",
                       "papermill notebooks/04_adaptive.ipynb out.ipynb -p rho 1.0 (then -p rho 0.8)")
    nums = {k: {"acc": _mean(v, "acc"), "visual acc, hard (last)": _mean(v, "last_acc_v_hard")}
            for k, v in rows.items()}
    return Answer(nums, "; ".join(f"ρ={k}: acc {_pct(v['acc'])}, hard-tier visual {_pct(v['visual acc, hard (last)'])}"
                                  for k, v in nums.items()) + " (compare with the spread of Table VI).")


def _04_kl(r: Runs) -> Answer:
    kl, prob = r.setting(gap="kl"), r.setting()
    if kl.empty or prob.empty:
        return missing("04 with gap kl", "papermill notebooks/04_adaptive.ipynb out.ipynb -p gap kl")
    nums = {g: {"π1 start": _mean(d, "start_pi1"), "π1 end": _mean(d, "end_pi1"),
                "|μ1 − μ0| start": _mean(d, "start_mu_sep"), "|μ1 − μ0| end": _mean(d, "end_mu_sep")}
            for g, d in (("prob", prob), ("kl", kl))}
    return Answer(nums, "; ".join(f"{g}: π1 {v['π1 start']:.2f} → {v['π1 end']:.2f}, |μ1 − μ0| "
                                  f"{v['|μ1 − μ0| start']:.2f} → {v['|μ1 − μ0| end']:.2f} (own units)"
                                  for g, v in nums.items()))


def _04_gamma(r: Runs) -> Answer:
    a, b = r.setting(ablation="no_align"), r.setting()
    if a.empty or b.empty:
        return missing("04 with gamma 0 (or notebook 05's Table III)", "papermill notebooks/04_adaptive.ipynb "
                       "out.ipynb -p gamma 0")
    return compare_arms(a, b, "last_acc_v_hard", _n_test(r), "γ = 0", "full model")


def _04_monotone(r: Runs) -> Answer:
    a, b = r.setting(posterior="monotone"), r.setting()
    if a.empty or b.empty:
        return missing("04 with posterior monotone", "papermill notebooks/04_adaptive.ipynb out.ipynb "
                       "-p posterior monotone")
    return compare_arms(a, b, "last_acc_v_hard", _n_test(r), "monotone", "eq9")


def _04_refit(r: Runs) -> Answer:
    every = {m["effective"]["refit_every"]: m for m in r.all_metrics("04_adaptive") if "effective" in m}
    if 3 not in every:
        return missing("04 with refit_every 3", "papermill notebooks/04_adaptive.ipynb out.ipynb -p refit_every 3")
    m = every[3]
    return Answer({"refits": len(m["gap_evolution"]) - 1, "acc": m["accuracy"]},
                  f"refit_every 3: {len(m['gap_evolution']) - 1} refits, test accuracy {_pct(m['accuracy'])} "
                  "(notebook 04 writes one folder per setting: rerun the default to compare).")


def _04_adam(r: Runs) -> Answer:
    same, sgd = r.setting(optimizer="adam", reset_optimizer=False), r.setting()
    if same.empty or sgd.empty:
        return missing("04 with Adam, same state (or notebook 05's Table IV)", "papermill notebooks/04_adaptive.ipynb"
                       " out.ipynb -p optimizer adam -p reset_optimizer False")
    gain = {k: _mean(d, "acc") - _mean(d, "warm_acc") for k, d in (("adam, same state", same), ("sgd, reset", sgd))}
    return Answer({**{f"{k}: gain from own start": v for k, v in gain.items()},
                   "adam start": _mean(same, "warm_acc"), "sgd start": _mean(sgd, "warm_acc")},
                  f"from its own start (the last epoch of its warm-up), Adam-same adds "
                  f"{100 * gain['adam, same state']:+.1f} points (start {_pct(_mean(same, 'warm_acc'))}), "
                  f"SGD-reset {100 * gain['sgd, reset']:+.1f} "
                  f"(start {_pct(_mean(sgd, 'warm_acc'))}).")


def _05_rho1(r: Runs) -> Answer:
    d = r.setting(rho=1.0)
    if d.empty:
        return missing("notebook 05's Table VI",
                       "papermill notebooks/05_ablations.ipynb out.ipynb -p tables '[\"VI\"]'")
    from mmgap.experiments.reporting import _resplit_of  # the same re-split test as the notebooks' verdicts

    split = int(sum(_resplit_of(row) for row in d.to_dict("records")))
    return Answer({"π1 start": _mean(d, "start_pi1"), "π1 end": _mean(d, "end_pi1"), "re-split seeds": split},
                  f"ρ = 1: π1 {_mean(d, 'start_pi1'):.2f} → {_mean(d, 'end_pi1'):.2f} over {len(d)} seed(s)"
                  + (f"; the components re-split on {split} seed(s), so π1 is not comparable there." if split else "."))


def _05_seeds(r: Runs) -> Answer:
    rows = r.csv("05_ablations")
    if rows is None or "table" not in rows:
        return missing("notebook 05", "papermill notebooks/05_ablations.ipynb out.ipynb -p seeds '[0, 1, 2, 3, 4]'")
    from mmgap.experiments.reporting import describe_ablations

    text = describe_ablations(rows[rows["table"] == "III"], str(rows[rows["row"] == rows["row"].iloc[0]]["setting"]
                                                                     .iloc[0]))
    ties = text.count("within the seed spread")
    n = int(rows["seed"].nunique())
    return Answer({"seeds": n, "ties in Table III": ties}, f"with {n} seed(s), {ties} row(s) of Table III tie the full "
                                                           "model (within the seed spread).")


def _05_epochs(r: Runs) -> Answer:
    rows, m = r.csv("05_ablations"), r.metrics("05_ablations")
    if rows is None or not m:
        return missing("notebook 05", "papermill notebooks/05_ablations.ipynb out.ipynb -p adaptive_epochs 20")
    means = rows.groupby("row")["acc"].mean()
    return Answer({"adaptive epochs": m["parameters"]["adaptive_epochs"], "range of row means": float(means.max()
                                                                                                      - means.min())},
                  f"at {m['parameters']['adaptive_epochs']} adaptive epochs the row means span "
                  f"{100 * (means.max() - means.min()):.1f} points (rerun with another value to compare).")


def _05_table_v(r: Runs) -> Answer:
    rows = r.csv("05_ablations")
    if rows is None or "V" not in set(rows.get("table", [])):
        return missing("notebook 05's Table V", "papermill notebooks/05_ablations.ipynb out.ipynb -p tables '[\"V\"]'")
    v = rows[rows["table"] == "V"].groupby(["mixture", "gap"])["acc"].mean().unstack()
    gap_effect = float((v["prob"] - v["kl"]).abs().mean())
    family_effect = float(pd.concat([v["prob"], v["kl"]], axis=1).apply(lambda c: c.max() - c.min()).mean())
    return Answer({"gap effect": gap_effect, "family effect": family_effect},
                  f"mean |prob − KL| within a family {100 * gap_effect:.1f} points; mean range over families within a "
                  f"gap {100 * family_effect:.1f} points: the {'gap' if gap_effect > family_effect else 'family'} "
                  "matters more here (both against the seed spread of the table).")


def _06_table(r: Runs) -> pd.DataFrame | None:
    rows = r.csv("06_purification")
    return rows


def _06_epochs(r: Runs) -> Answer:
    rows, m = _06_table(r), r.metrics("06_purification")
    if rows is None or not m:
        return missing("notebook 06", "papermill notebooks/06_purification.ipynb out.ipynb -p finetune_epochs 10")
    base = rows[rows["tau"] == 0.0]["acc"].mean()
    best = rows[rows["tau"] > 0].groupby("tau")["acc"].mean()
    return Answer({"finetune_epochs": m["parameters"].get("finetune_epochs"), "100 %": base,
                   "best purified": float(best.max())},
                  f"best purified {_pct(best.max())} (τ = {best.idxmax()}) against 100 % fine-tuning {_pct(base)}: "
                  f"{100 * (best.max() - base):+.1f} points at this run's fine-tuning length.")


def _06_kl(r: Runs) -> Answer:
    t = _bic(r)
    if t is None:
        return missing("notebook 03", "papermill notebooks/03_gap_fitting.ipynb out.ipynb")
    g = t[t["mixture"] == "gmm"].set_index("gap")
    return Answer({"π1 prob": g.loc["prob", "π1 (imbalanced)"], "π1 kl": g.loc["kl", "π1 (imbalanced)"]},
                  f"the imbalanced weight π1 is {g.loc['prob', 'π1 (imbalanced)']:.2f} with the prob gap and "
                  f"{g.loc['kl', 'π1 (imbalanced)']:.2f} with KL: a threshold on w0 keeps a different share of clips.")


def _06_taus(r: Runs) -> Answer:
    rows = _06_table(r)
    if rows is None:
        return missing("notebook 06", "papermill notebooks/06_purification.ipynb out.ipynb -p taus '[0.99, 0.999]'")
    t = rows.groupby("tau").agg(data=("data_pct", "mean"), acc=("acc", "mean"))
    empty = [float(k) for k, v in t["acc"].items() if not math.isfinite(v)]
    return Answer({"data % per τ": t["data"].to_dict(), "too few clips at τ": empty},
                  "data kept per τ: " + ", ".join(f"{k} {v:.1f} %" for k, v in t["data"].items())
                  + (f"; too few clips to fine-tune at τ = {empty}" if empty else "; every τ left enough clips."))


def _06_removed(r: Runs) -> Answer:
    rows = _06_table(r)
    if rows is None or "kept_hard" not in rows:
        return missing("notebook 06 on the embedded data", "papermill notebooks/06_purification.ipynb out.ipynb")
    t = rows[rows["tau"] > 0].groupby("tau")[["kept_clean", "kept_hard", "kept_corrupt"]].mean()
    return Answer({"kept share per τ": t.to_dict("index")},
                  "; ".join(f"τ = {k}: keeps clean {_pct(v['kept_clean'])}, hard {_pct(v['kept_hard'])}, corrupt "
                            f"{_pct(v['kept_corrupt'])}" for k, v in t.iterrows()))


def _07_seeds(r: Runs) -> Answer:
    m = r.metrics("07_baselines")
    if not m:
        return missing("notebook 07", "papermill notebooks/07_baselines.ipynb out.ipynb -p methods "
                       "'[\"concat\", \"ogm_ge\", \"ours_prob\"]' -p seeds '[0, 1, 2, 3, 4]'")
    keep = [k for k in ("concat", "ogm_ge", "ours_prob") if k in m["methods"]]
    nums = {k: {"acc": m["methods"][k]["acc"], "std": m["methods_std"][k]["acc"]} for k in keep}
    return Answer({**nums, "seeds": len(m["seeds"])}, f"{len(m['seeds'])} seeds: " + ", ".join(
        f"{k} {_pct(v['acc'])} ± {100 * v['std']:.1f}" for k, v in nums.items()))


def _07_visual(r: Runs) -> Answer:
    m = r.metrics("07_baselines")
    if not m or "concat" not in m["methods"]:
        return missing("notebook 07 with concat", "papermill notebooks/07_baselines.ipynb out.ipynb")
    c = m["methods"]["concat"]
    buy = [k for k, v in m["methods"].items() if k != "concat" and v.get("acc_v") is not None and v.get("acc_a")
           is not None and v["acc_v"] > c["acc_v"] and v["acc"] <= c["acc"]]
    return Answer({"better visual, not better fused (vs concat)": buy},
                  "better visual branch than concat without a better fused prediction: " + (", ".join(buy) or "none"))


def _07_reuse(r: Runs) -> Answer:
    rows = r.csv("07_baselines")
    if rows is None or "reused" not in rows:
        return missing("notebook 07", "papermill notebooks/07_baselines.ipynb out.ipynb")
    ours = rows[rows["method"].isin(["ours_prob", "ours_kl", "control"])]
    return Answer({"reused": int(ours["reused"].astype(bool).sum()), "runs": len(ours)},
                  f"{int(ours['reused'].astype(bool).sum())} of {len(ours)} runs of ours and the control were reused.")


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One "Try this" item: its notebook, the question, and the key that answers it from the runs."""

    notebook: str
    question: str
    key: Callable[[Runs], Answer]


EXERCISES: tuple[Exercise, ...] = (
    Exercise("01", "Run again: are the dataset and the cache reused?", _01_reuse),
    Exercise("01", "preset smoke: compare the shapes of the arrays with the default preset's.", _01_shapes),
    Exercise("01", "CREMA-D: the same cells on real faces and speech (Table I's row).", _01_crema),
    Exercise("01", "Listen to a hard and a corrupt clip: does the audio alone still tell the digit?", _01_listen),
    Exercise("02", "seed 1: how much do the curves move between seeds?", _02_seed),
    Exercise("02", "preset paper on a GPU with CREMA-D.", _02_paper),
    Exercise("02", "How much does L_v alone buy the visual branch (concat vs warm-up vs visual-only)?", _02_lv),
    Exercise("02", "Which tier makes the imbalance margin: clean or hard?", _02_tier),
    Exercise("02", "Open metrics.json: what is stored?", _02_file),
    Exercise("03", "mixture smm / lmm: which fits best by BIC, which gives the highest AUROC?", _03_family),
    Exercise("03", "Which tier does the mixture miss most, hard or corrupt?", _03_tier),
    Exercise("03", "Prob vs KL rows of the BIC table: is the label-free gap as informative?", _03_kl),
    Exercise("03", "seed 1: is the bimodality stable across warm-up seeds?", _03_seed),
    Exercise("03", "A shorter warm-up (a smaller preset): does the second bump fade?", _03_warmup),
    Exercise("04", "rho 1.0, then 0.8: compare with Table VI.", _04_rho),
    Exercise("04", "gap kl: does Fig. 5 look different?", _04_kl),
    Exercise("04", "gamma 0: does the hard tier's visual accuracy change beyond the noise?", _04_gamma),
    Exercise("04", "posterior monotone: does the full pull on the most imbalanced clips change anything?",
             _04_monotone),
    Exercise("04", "refit_every 3: cheaper, but stale posteriors?", _04_refit),
    Exercise("04", "Adam, same state: compare each arm with its own start.", _04_adam),
    Exercise("05", "Table VI, then rho 1.0: without annealing, does the imbalanced component shrink?", _05_rho1),
    Exercise("05", "seeds 0-4: do the ties of Table III resolve?", _05_seeds),
    Exercise("05", "adaptive_epochs 20: do the differences between rows grow?", _05_epochs),
    Exercise("05", "Table V: is the gap or the family the larger effect?", _05_table_v),
    Exercise("06", "finetune_epochs 10: does the gap to 100 % fine-tuning grow or vanish?", _06_epochs),
    Exercise("06", "KL vs prob gap: would the threshold keep a different subset?", _06_kl),
    Exercise("06", "taus 0.99, 0.999: how far can the selection go?", _06_taus),
    Exercise("06", "Which clips does each threshold remove (the tiers)?", _06_removed),
    Exercise("07", "Fewer methods, more seeds: do the whiskers shrink enough?", _07_seeds),
    Exercise("07", "Which methods buy a better visual branch without a better fused prediction?", _07_visual),
    Exercise("07", "Run 05 first: which runs of 07 are reused?", _07_reuse),
)


def answer_all(runs: Runs, notebooks: Sequence[str] | None = None) -> list[tuple[Exercise, Answer]]:
    """Every exercise's answer (or why it is not ready); a key that fails reports its error as not ready."""
    out = []
    for ex in EXERCISES:
        if notebooks and ex.notebook not in notebooks:
            continue
        try:
            ans = ex.key(runs)
        except (KeyError, ValueError, TypeError, ZeroDivisionError, IndexError) as exc:
            ans = Answer({}, f"could not compute: {type(exc).__name__}: {exc}", ready=False)
        out.append((ex, ans))
    return out


CLAIMS: tuple[tuple[str, str], ...] = (
    ("bimodal", "After the warm-up, the z-scored gaps are bimodal: a balanced peak and an imbalanced one (Fig. 3)."),
    ("detects", "The mixture's posterior w1 finds the imbalanced samples (Eq. 9)."),
    ("pi1", "The adaptive loss shrinks the imbalanced component: π1 falls (Fig. 5)."),
    ("weak", "The weak (visual) modality's accuracy rises in the adaptive stage (Fig. 6)."),
    ("fused", "The method beats the baselines on fused accuracy (Table II)."),
    ("terms", "Each term of Eq. 11 helps: the full model is the best row (Table III)."),
    ("purify", "Fine-tuning on the w0 ≥ τ subset beats fine-tuning on all the data (Table VII)."),
)
"""The paper's claims the course tests, by key; the findings beside them are computed by `claims_vs_findings`."""


def _phenomenon(rows: list[dict[str, Any]], quantity: str) -> str:
    for r in rows:
        if r.get("quantity") == quantity:
            return (f"adaptive − control {r['adaptive − control']} over {r['n']} seed(s), adaptive − start "
                    f"{r.get('adaptive − start', 'n/a')}: {r['verdict']}")
    return "not run (notebook 05's Table III with its control)"


def findings(runs: Runs) -> dict[str, str]:
    """What this preset's runs find for each claim of `CLAIMS` (a sentence each, from the notebooks' outputs)."""
    out: dict[str, str] = {}
    m3, m5, m6, m7 = (runs.metrics("03_gap_fitting", seed=0), runs.metrics("05_ablations"),
                      runs.metrics("06_purification"), runs.metrics("07_baselines"))
    if m3:
        d = m3["bic"]["delta"]
        out["bimodal"] = f"ΔBIC (1 − 2 components) {d:.1f} on seed 0: {'bimodal' if d > 0 else 'not bimodal'}."
        auc = m3.get("auroc_w1")
        out["detects"] = (f"AUROC of w1 against the ground truth {auc:.3f} (0.5 = chance)." if auc is not None
                          and math.isfinite(auc) else "no ground truth on this dataset.")
    phen = m5.get("phenomena_vs_control", []) if m5 else []
    out["pi1"] = _phenomenon(phen, "π1, imbalanced weight")
    out["weak"] = _phenomenon(phen, "visual acc., hard (%)") + " (hard tier); " + _phenomenon(phen, "visual acc. (%)")
    if m7:
        groups = [g for g in m7.get("verdict_by_group") or [] if g.get("metric") == "acc"]
        out["fused"] = ("; ".join(f"against the best {g['group'].lower()} row ({g['best of group']}): "
                                  f"{g['difference']:+.2f} points, {g['verdict']}" for g in groups)
                        + f" ({groups[0]['ours']}, {groups[0]['n']} seeds, fused accuracy)." if groups
                        else m7["verdict"].splitlines()[0])
    if m5:
        best = [line for line in m5["findings"].splitlines() if line.strip().startswith(("best row", "best rows"))]
        out["terms"] = "Table III " + (best[0].strip() if best else "not run") + "."
    if m6:
        out["purify"] = m6["findings"].splitlines()[-1]
    return out


def claims_vs_findings(runs: Runs) -> str:
    """One page of Markdown: each claim of the paper beside what this preset's runs find (computed)."""
    found = findings(runs)
    lines = [f"# The paper claims → this course finds ({runs.preset} preset)", "",
             "| the paper claims | this course finds |", "|---|---|"]
    for key, claim in CLAIMS:
        lines.append(f"| {claim} | {found.get(key, 'not run yet').replace('|', '/')} |")
    lines += ["", "Every finding is computed from the runs by `python -m mmgap.answers --summary`; a verdict counts "
              "a difference only beyond the seed spread (or, for one seed, makes no claim)."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the answer keys (or the questions, or the claims-vs-findings summary)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers, e.g. 04 05 (default: all)")
    parser.add_argument("--preset", default="demo", choices=["smoke", "demo", "paper"])
    parser.add_argument("--runs", default=None, help="runs folder (default: runs/ or $MMGAP_RUNS_DIR)")
    parser.add_argument("--list", action="store_true", help="print the questions only")
    parser.add_argument("--summary", action="store_true", help="the paper's claims against what the runs find")
    args = parser.parse_args(argv)
    runs = Runs(args.preset, args.runs)
    if args.summary:
        print(claims_vs_findings(runs))
        return 0
    for ex in EXERCISES:
        if args.list and (not args.notebooks or ex.notebook in args.notebooks):
            print(f"[{ex.notebook}] {ex.question}")
    if args.list:
        return 0
    for ex, ans in answer_all(runs, args.notebooks):
        print(f"[{ex.notebook}] {ex.question}\n    {ans.text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
