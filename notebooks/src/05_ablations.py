# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Ablations: which parts of the adaptive loss matter? (Tables III–VI)
#
# **The question.** Notebook 04 trained the method once. Here we ask *why* it works, by switching its
# parts off or swapping them, and we ask it with several seeds, because a single run cannot tell a real
# effect from luck. The adaptive stage minimises, per sample $i$ (Eq. 11),
#
# $$\mathcal{L}^i_{\text{adap}} = \alpha\, w_{i,0}\, \mathcal{L}_f + \lambda_t \big(\beta\, |g_i|^2
#   + \gamma\, w_{i,1}\, |g_i - \mu_0|^2 + \mathcal{L}_a + \mathcal{L}_v\big), \qquad \lambda_t = \rho^{\text{epoch}},$$
#
# where $g_i$ is the modality gap (Eq. 5: $g_i = s^a_{y_i} - s^v_{y_i}$, or Eq. 6 with KL divergences),
# $w_{i,0}, w_{i,1}$ are the posteriors of the balanced and imbalanced mixture components (Eq. 9) and
# $\mu_0$ is the balanced component's mean.
#
# | table | what varies | rows |
# |---|---|---|
# | III | the loss's terms | full; $\alpha=0$; $\beta=0$; $\gamma=0$; $w_{i,0}=w_{i,1}=1$; no $\mathcal{L}_a,\mathcal{L}_v$; the monotone posterior; the control |
# | IV | optimizer and its state at the stage change | SGD / Adam × reset / same state |
# | V | the mixture's family × the gap | GMM, Student-t (SMM), Laplace (LMM) × Prob, KL |
# | VI | the annealing rate | $\rho \in \{1.0, 0.95, 0.9, 0.85, 0.8\}$ |
#
# Two rows of Table III are not in the paper. **The monotone posterior** keeps $w_{i,1}$ at its maximum beyond
# the imbalanced mean, where Eq. 9 as printed hands the most imbalanced clips back to the balanced component
# (notebook 03, section 4). **The control** continues the warm-up loss (Eq. 10) from the same warm-up for the
# same epochs: without it, a gain of the full model over the warm-up could simply be the gain of training
# longer. The last section compares the full model with the control, seed by seed.
#
# **How the work is shared.** All rows start from the same warm-up (Eq. 10) of each seed, and a setting
# that several tables list is trained once: the full model of Table III *is* SGD-reset in IV, GMM(Prob) in V
# and $\rho = 0.95$ in VI. Adam rows start from an Adam warm-up (the "same state" row carries the warm-up's
# optimizer state over). The paper does not state Adam's learning rate; we use 0.5 × the SGD rate (`adam_lr`),
# because a small one left the audio branch untrained on this dataset (see `mmgap.experiments.ADAM_LR_RATIO`).
# Runs are kept under `runs/<preset>/adaptive/`; re-running this notebook with the same settings reuses
# them (notebook 07 reuses the full model and GMM(KL) too).
#
# **What it costs.** Each distinct setting is one adaptive run per seed; the validation cell prints how many
# distinct settings the chosen tables hold, and so how many runs they mean at your seeds. On a CPU, runs go to `workers` processes at once (one per core); each run is
# seeded on its own, so the tables do not depend on `workers`. Use `tables` and `adaptive_epochs` to trade
# coverage for time; the first printed line says how many runs a choice means.
#
# **What to look for.** Whether the full model is the best row of Table III *by more than the spread over
# seeds*; whether resetting the optimizer helps (Table IV); whether the Laplace mixture lags (Table V);
# and whether $\rho = 1$ (no annealing) hurts (Table VI). The paper's numbers are on CREMA-D, AVE and
# Kinetics-Sounds (it gives no epoch budget for the adaptive stage); this dataset and budget are small, so
# expect small and noisy differences: the code cells below state what this run actually shows.
#
# **Each row against its own start.** Every row is also compared with the model it started from, the last
# warm-up epoch of its own warm-up. This matters for Table IV: the Adam rows start from an Adam warm-up, which
# may already be better (or worse) than the SGD one, so a row above the full model is not necessarily a better
# adaptive stage; the findings print each row's gain from its own start.
#
# **In class.** The whole sweep is the longest notebook of the course. For a lesson, run one table at fewer
# seeds, e.g. `papermill notebooks/05_ablations.ipynb out.ipynb -p tables '["III"]' -p seeds '[0, 1]'`
# (the README lists each variant with its time).

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" (generated locally) or a real dataset name (see data/README.md)
data_dir = None  # str | None: raw data folder (relative: from the repo root); None: data/<dataset>
rebuild = False  # bool: decode every clip again, not reusing the feature cache (after editing files in place)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (2-core CPU) | "paper" (GPU, real data)
seed = 0  # int: first training seed (used when `seeds` is None)
seeds = None  # list | None: training seeds for mean ± std; None: seed, seed + 1, ... (three at demo)
device = "auto"  # str: "auto" (CUDA when available, else CPU) | "cpu" | "cuda"
tables = ["III", "IV", "V", "VI"]  # list: which tables to run (a subset is cheaper)
adaptive_epochs = None  # int | None: epochs of the adaptive stage; None: the preset's
adam_lr = None  # float | None: Adam's learning rate in Table IV; None: 0.5 × the preset's SGD rate
fresh = False  # bool: True: retrain even when a finished run with identical settings exists
workers = None  # int | None: runs trained at once; None: one per CPU core (at most 4), 1 on a GPU
executor = "local"  # str: "local" (this machine's processes) | "ray" (a Ray cluster; see docs/cluster.md)
address = None  # str | None: the Ray cluster to join ("10.0.0.5:6379"); None: RAY_ADDRESS, else a local cluster
gpus_per_run = None  # float | None: a Ray run's share of a GPU (0.25 packs four runs on one); None: 1 if GPUs

# %% tags=["validation"]
# Validate the parameters before any work (papermill does no type checking).
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from mmgap import atomic, paths, plots
from mmgap import experiments as ex
from mmgap.data import prepare
from mmgap.results import save_table, write_metrics

cfg, dev = ex.check_params(globals(), notebook="05_ablations")  # ConfigError names a bad value
out = paths.run_dir(cfg.name, "05_ablations")
full_key = ex.AdaptiveSetting.from_preset(cfg).key  # the row every table shares
plan = ex.ablation_plan(tables, ex.AdaptiveSetting.from_preset(cfg))
print(f"preset={cfg.name}, dataset={dataset}, seeds={seeds}, tables={tables}, device={dev}")
n_settings = len(ex.distinct_settings(plan))
print(f"{len(plan)} table rows, {n_settings} distinct settings: {n_settings * len(seeds)} adaptive runs at "
      f"{len(seeds)} seed(s); results in {paths.shown(out)}")

# %% [markdown]
# **The protocol card** of the full model every table shares: every value, and who gives it (the paper, a method's
# authors, or this project's choice, with the reason), with the software that ran it. `metrics.json` stores it;
# `docs/protocol-cards.md` sets the cards of every preset and dataset side by side.

# %%
card = ex.protocol_card(cfg, dataset, "ours_prob", seeds=seeds, device=str(dev))
display(card.table())

# %% [markdown]
# ## The data
# The feature cache is built (or reused) through the package, exactly as notebook 01 does.

# %%
t_start = time.perf_counter()
cache = prepare(dataset, data_dir, cfg, seed, rebuild=rebuild)
print(f"cache: {ex.cache_id(cache)}, {len(cache)} clips, {cache.num_classes} classes, splits {cache.counts()}")

# %% [markdown]
# ## Run the sweep
# One warm-up per seed (reused when notebook 02 or an earlier run left a compatible one), then every
# distinct setting once per seed. A progress bar counts the adaptive runs.

# %%
rows = ex.run_ablations(cache, cfg, tables=tables, seeds=seeds, device=str(dev), adam_lr=adam_lr, fresh=fresh,
                       workers=workers, executor=executor, address=address, gpus_per_run=gpus_per_run)
atomic.write_text(out / "runs.csv", rows.drop(columns=["run_dir"]).to_csv(index=False))
sweep_seconds = time.perf_counter() - t_start
runs_once = rows.drop_duplicates(["setting", "seed"])
print(f"{int((~runs_once['reused']).sum())} runs trained, {int(runs_once['reused'].sum())} reused, "
      f"{sweep_seconds:.0f} s")

# %% [markdown]
# ## The tables
# Test accuracy, macro-F1 and per-modality accuracy (%) of the validation-selected epoch, mean ± std over
# seeds (`n` = number of seeds). The std is the sample std; with three seeds it is itself uncertain.

# %%
summaries = {}
tier_cols = [c for c in ("acc_v_hard",) if c in rows and rows[c].notna().all()]  # embedded data: ground truth
for table in tables:
    part = rows[rows["table"] == table]
    t = ex.table_of(part, "row", metrics=("acc", "f1", "acc_a", "acc_v", *tier_cols))
    t.columns = ["setting" if c == "row" else ex.METRIC_LABELS.get(c, c) for c in t.columns]
    save_table(t, out / f"table_{table}")
    summaries[table] = part.groupby("row", sort=False)["acc"].agg(["mean", "std"]).reset_index()
    display(Markdown(f"### {ex.TABLE_TITLES[table]}"))
    display(t)

# %% [markdown]
# ## One figure for all tables
# Each panel shows one table: the dot is the mean test accuracy over seeds, the bar ± 1 std, and the
# dashed line the full model's mean (the reference row every table shares).

# %%
plots.set_style()
fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.8), squeeze=False)
for ax, table in zip(axes[0], tables, strict=True):
    part = rows[rows["table"] == table].assign(acc_pct=lambda d: 100 * d["acc"])
    sns.pointplot(data=part, y="row", x="acc_pct", errorbar="sd", linestyle="none", capsize=0.2, ax=ax)
    ref = 100 * rows[rows["setting"] == full_key]["acc"].mean()
    ax.axvline(ref, ls="--", color="grey", lw=1)
    ax.set_title(f"Table {table}")
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("")
fig.suptitle(f"Ablations on {dataset} ({cfg.name} preset), mean ± std over {len(seeds)} seed(s)")
fig.tight_layout()
atomic.save_figure(fig, out / "ablations.png", dpi=120)
plt.show()

# %% [markdown]
# ## What this run shows
# The cell below compares each row with the full model and calls a difference clear only when it exceeds
# the larger of the two stds over seeds. Read the tables with it: a "tie" is the honest verdict whenever the
# seeds disagree more than the settings do.

# %%
findings = ex.describe_ablations(rows, full_key)
print(findings)

# %% [markdown]
# ## Which per-sample score finds the imbalanced clips? (over seeds)
# Notebook 03 grades, on one warm-up, every method's per-sample score against the embedded data's ground truth:
# the paper's posterior $w_1$ (Eq. 9 and monotone), the raw gap and a plain threshold on it, SMV's contribution
# deficit, Remix's assignment and BSS's difficulty. Here the same grading runs on each seed's warm-up (the ones
# the sweep above started from; nothing is trained): AUROC of `imbalanced`, `hard` vs `clean` and `corrupt` vs
# `clean`, and the mean score per tier, mean ± std over seeds.

# %%
from mmgap import sample_scores

t0 = time.perf_counter()
score_table = None
if getattr(cache, "visual_tier", None) is not None:
    warmups = ex.ensure_warmups(cache, cfg, seeds, device=str(dev))
    graded = {s: sample_scores.grade(sample_scores.warmup_scores(cache, cfg, warmups[s], seed=s, device=str(dev)))
              for s in seeds}
    score_table = sample_scores.over_seeds(graded)
    display(score_table)
    save_table(score_table.reset_index(), out / "table_sample_scores")
    means = pd.concat(graded.values()).groupby(level=0, sort=False).mean()
    best_hard = means["AUROC hard vs clean"].idxmax()
    paper_hard = means.loc["w1 (Eq. 9)", "AUROC hard vs clean"]
    print(f"over {len(seeds)} seed(s): the paper's w1 (Eq. 9) separates hard from clean clips with mean AUROC "
          f"{paper_hard:.3f} and corrupt from clean with {means.loc['w1 (Eq. 9)', 'AUROC corrupt vs clean']:.3f}; "
          f"the best score on hard vs clean is {best_hard} ({means.loc[best_hard, 'AUROC hard vs clean']:.3f}).")
else:
    print("no ground-truth visual tiers for this dataset: the per-sample scores cannot be graded")
scores_seconds = time.perf_counter() - t0

# %% [markdown]
# ## Against the control, seed by seed
# The paper's Fig. 5 and 6 say what Eq. 11 should do: the imbalanced weight $\pi_1$ falls, $\mu_1$ moves
# towards $\mu_0$, the weak branch's accuracy rises. The table checks each against the **control** (the
# warm-up loss continued from the same warm-up), seed by seed: the mixture is fitted on each arm's last
# model (an eval pass over the training set, components labelled by location) and accuracies are those of
# the last epoch on both sides, so no selection noise enters. "adaptive − control" is the paired difference
# over seeds; it counts only when its mean exceeds its std. A quantity "falls" or "rises" as the paper expects
# only when it does so from the arm's own start ("adaptive − start") *and* against the control. $\pi_1$ and
# $\mu_1$ are compared only while the two components keep their identity: when $\pi_1$ crosses one half
# (or the means swap) the components have re-split, and the verdict says so instead of counting it. On the
# embedded data, the `hard` row is the one that matters: those pictures can be learned, the `corrupt` ones
# cannot.

# %%
control_key = ex.control_setting(ex.AdaptiveSetting.from_preset(cfg)).key
phenomena = ex.phenomena_table(rows, full_key, control_key) if "III" in tables else pd.DataFrame()
if phenomena.empty:
    print("Table III (with its control row) was not run: no comparison with the control.")
else:
    display(phenomena)
    save_table(phenomena, out / "table_phenomena_vs_control")

# %% [markdown]
# ## Why it does not help here, over seeds
#
# Notebook 04's section 6 on every seed's warm-up (the model both arms start from): the audio branch's
# saturation, where the mixture's weight lands per tier, where the balanced component and the pull target
# $\mu_0$ sit, and the noise floor of one test accuracy. A reading that holds on every seed is a property of
# the data and the warm-up, not of one seed's luck.

# %%
full_setting = ex.AdaptiveSetting.from_preset(cfg)
warm_acc = rows[rows["setting"] == full_key].drop_duplicates("seed").set_index("seed")
why = {s: ex.explain.explain_setting(cache, cfg, full_setting, s, test_acc=float(warm_acc.loc[s, "warm_acc"]),
                                     device=str(dev)) for s in seeds if s in warm_acc.index}
why_table = ex.explain.over_seeds(why)
display(why_table.round(3))
save_table(why_table.round(4), out / "table_why_over_seeds")
facts = pd.DataFrame({s: e.findings() for s, e in why.items()}).T
held = [k for k in ("audio_saturated", "w1_on_corrupt_more_than_hard", "balanced_off_peak", "audio_side_frozen")
        if k in facts and facts[k].astype(bool).all()]
print(f"holds on all {len(why)} seed(s): {', '.join(held) if held else 'none of the four facts'}")
if why:
    print("seed", next(iter(why)), "reads:\n" + "\n".join(next(iter(why.values())).lines()))

metrics = {
    "protocol": card.to_dict(),
    "notebook": "05_ablations",
    "dataset": dataset,
    "preset": cfg.name,
    "seeds": seeds,
    "device": str(dev),
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": cfg.name, "seed": seed, "seeds": seeds,
                   "device": str(dev), "tables": tables, "adaptive_epochs": cfg.train.adaptive_epochs,
                   "adam_lr": adam_lr, "fresh": fresh, "workers": workers},
    "config": cfg.to_dict(),
    "tables": {t: summaries[t].to_dict(orient="records") for t in tables},
    "full_model": {m: float(rows[rows["setting"] == full_key][m].mean())
                   for m in ex.METRICS},
    "accuracy": float(rows[rows["setting"] == full_key]["acc"].mean()),
    "macro_f1": float(rows[rows["setting"] == full_key]["f1"].mean()),
    "acc_audio": float(rows[rows["setting"] == full_key]["acc_a"].mean()),
    "acc_visual": float(rows[rows["setting"] == full_key]["acc_v"].mean()),
    "findings": findings,
    "phenomena_vs_control": phenomena.to_dict(orient="records"),
    "sample_scores": None if score_table is None else score_table.reset_index().to_dict(orient="records"),
    "why_over_seeds": why_table.to_dict(orient="records"),
    "why_holds_on_every_seed": held,
    "runs": {"rows": len(rows), "distinct": int(rows.drop_duplicates(["setting", "seed"]).shape[0]),
             "trained": int((~rows.drop_duplicates(["setting", "seed"])["reused"]).sum())},
    "timings": {"total_seconds": time.perf_counter() - t_start, "sweep_seconds": sweep_seconds,
                "scores_seconds": scores_seconds,
                "train_seconds_per_run": float(rows.drop_duplicates(["setting", "seed"])["seconds"].mean())},
}
print("wrote", paths.shown(write_metrics(out, metrics)))

# %% [markdown]
# ## Try this
#
# Each change goes in the parameters cell (the first code cell); then Run > Restart Kernel and Run All Cells.
# From a shell, papermill takes the same change as `-p NAME VALUE` (in brackets).
#
# - `tables = ["VI"]` (`-p tables '["VI"]'`) runs only the ρ sweep; then `rho = 1.0` (`-p rho 1.0`) in
#   notebook 04 and compare its Fig. 5 with the default: without annealing, does $\pi_1$ fall from its start,
#   or do the components re-split?
# - `seeds = [0, 1, 2, 3, 4]` (`-p seeds '[0, 1, 2, 3, 4]'`): do the ties of Table III resolve with more
#   seeds, or stay ties?
# - `adaptive_epochs = 20` (`-p adaptive_epochs 20`): do the differences between rows grow with a longer
#   adaptive stage?
# - In Table V, compare Prob and KL within each family: is the gap choice or the family the larger effect?
#
# **Check your answers:** `python -m mmgap.answers 05 --preset <preset>` computes each answer from the runs.
