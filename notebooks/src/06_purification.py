# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Data purification: fine-tune on the clips the mixture calls balanced (Table VII)
#
# **The question.** The mixture of notebook 03 gives every training clip a posterior $w_{i,0}$ of belonging
# to the *balanced* subgroup (Eq. 9):
#
# $$w_{i,0} = \frac{\pi_0\, \mathcal{N}(\hat g_i \mid \mu_0, \sigma_0^2)}
#   {\pi_0\, \mathcal{N}(\hat g_i \mid \mu_0, \sigma_0^2) + \pi_1\, \mathcal{N}(\hat g_i \mid \mu_1, \sigma_1^2)},
#   \qquad \hat g_i = (g_i - \mu_g)/\sigma_g \;\; \text{(Eq. 7)}.$$
#
# If the imbalanced clips (large gap: one modality is poor) mostly add noise, then simply **dropping them** and
# fine-tuning with the plain warm-up loss $\mathcal{L}_{wp} = \mathcal{L}_f + \mathcal{L}_a + \mathcal{L}_v$ (Eq. 10)
# should help, without the adaptive loss at all. The paper (Table VII) finds gains at every threshold $\tau$ on
# $w_{i,0} \ge \tau$, and a trade-off: a high $\tau$ keeps purer but fewer clips.
#
# **The control.** Fine-tuning trains for more epochs, which alone can raise accuracy. So the reference row
# here is a control: *the same warm-up, fine-tuned for the same epochs on 100 % of the data* ($\tau = 0$). The
# paper's baseline row (Table VII) is the warm-up model itself, before any fine-tuning; ours adds the
# fine-tuning epochs to it, which isolates the effect of the selection (the findings print the warm-up too).
#
# **Which clips go?** On the embedded data we know each clip's visual tier, and the table shows the share of
# each tier a threshold keeps. Dropping `corrupt` clips removes noise; dropping `hard` clips removes pictures
# the visual branch could still learn from. Purification cannot tell the two apart: both have large gaps.
#
# **What to look for.** How quickly the data fraction falls with $\tau$; whether any $\tau$ beats the 100 %
# control by more than the spread over seeds; where the optimum $\tau$ lies (the paper: 60 % on
# Kinetics-Sounds, lower on CREMA-D).

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" (generated locally) or a real dataset name (see data/README.md)
data_dir = None  # str | None: raw data folder (relative: from the repo root); None: data/<dataset>
rebuild = False  # bool: decode every clip again, not reusing the feature cache (after editing files in place)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (2-core CPU) | "paper" (GPU, real data)
seed = 0  # int: first training seed (used when `seeds` is None)
seeds = None  # list | None: training seeds for mean ± std; None: seed, seed + 1, ... (three at demo)
device = "auto"  # str: "auto" (CUDA when available, else CPU) | "cpu" | "cuda"
taus = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]  # list: thresholds τ on w0 (the paper's)
finetune_epochs = None  # int | None: fine-tuning epochs; None: the preset's
fresh = False  # bool: True: retrain even when a finished run with identical settings exists
workers = None  # int | None: runs trained at once; None: one per CPU core (at most 4), 1 on a GPU
executor = "local"  # str: "local" (this machine's processes) | "ray" (a Ray cluster; see docs/cluster.md)
address = None  # str | None: the Ray cluster to join ("10.0.0.5:6379"); None: RAY_ADDRESS, else a local cluster
gpus_per_run = None  # float | None: a Ray run's share of a GPU (0.25 packs four runs on one); None: 1 if GPUs

# %% tags=["validation"]
# Validate the parameters before any work (papermill does no type checking).
import time

import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import display

from mmgap import atomic, paths, plots
from mmgap import experiments as ex
from mmgap.data import prepare
from mmgap.results import save_table, write_metrics

cfg, dev = ex.check_params(globals(), notebook="06_purification")  # ConfigError names a bad value
out = paths.run_dir(cfg.name, "06_purification")
print(f"preset={cfg.name}, dataset={dataset}, seeds={seeds}, taus={taus}, "
      f"{cfg.train.finetune_epochs} fine-tuning epochs, device={dev}; results in {paths.shown(out)}")

# %% [markdown]
# **The protocol card** of the method whose warm-up and posteriors the fine-tunes start from: every value, and who gives
# it (the paper, a method's authors, or this project's choice, with the reason), with the software that ran it.
# `metrics.json` stores it; `docs/protocol-cards.md` sets the cards of every preset and dataset side by side.

# %%
card = ex.protocol_card(cfg, dataset, "ours_prob", seeds=seeds, device=str(dev))
display(card.table())

# %% [markdown]
# ## The data and the warm-up
# The feature cache comes from the package (as in notebook 01). Each seed's warm-up checkpoint (Eq. 10) is
# shared with notebooks 05 and 07: it is reused when present and trained (with a note) when missing.

# %%
t_start = time.perf_counter()
cache = prepare(dataset, data_dir, cfg, seed, rebuild=rebuild)
print(f"cache: {ex.cache_id(cache)}, {len(cache)} clips, {cache.num_classes} classes, splits {cache.counts()}")
warmups = ex.ensure_warmups(cache, cfg, seeds, str(dev), workers=workers,
                            executor=executor, address=address, gpus_per_run=gpus_per_run)
for s, p in warmups.items():
    print(f"seed {s}: warm-up {paths.shown(p)}")

# %% [markdown]
# ## Fine-tune on each subset
# For each seed, one mixture is fitted on the warmed-up model's gaps over the training set, and each
# threshold keeps the clips with $w_{i,0} \ge \tau$; the control keeps them all ($\tau = 0$).

# %%
rows = ex.run_purification(cache, cfg, taus=taus, seeds=seeds, device=str(dev), fresh=fresh,
                           workers=workers, executor=executor, address=address, gpus_per_run=gpus_per_run)
atomic.write_text(out / "runs.csv", rows.drop(columns=["run_dir"]).to_csv(index=False))
sweep_seconds = time.perf_counter() - t_start

# %% [markdown]
# ## Table VII on this dataset
# `Data (%)` is the share of training clips kept; accuracy and macro-F1 are on the test split, mean ± std
# over seeds, of the validation-selected epoch.

# %%
table = ex.purification_table(rows)
save_table(table, out / "table_VII")
display(table)

# %% [markdown]
# ## Accuracy against the threshold
# Left: test accuracy (mean ± std over seeds) per τ; the band is the 100 % control's mean ± std.
# Right: how much data each threshold keeps.

# %%
plots.set_style()
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
sub = rows[rows["tau"] > 0].assign(acc_pct=lambda d: 100 * d["acc"])
base = 100 * rows.loc[rows["tau"] == 0, "acc"]
ax1.axhspan(base.mean() - base.std(ddof=1) if len(base) > 1 else base.mean(),
            base.mean() + base.std(ddof=1) if len(base) > 1 else base.mean(), color="grey", alpha=0.2)
ax1.axhline(base.mean(), color="grey", ls="--", label="fine-tuned on 100 % (control)")
sns.lineplot(data=sub, x="tau", y="acc_pct", errorbar="sd", marker="o", ax=ax1, label="fine-tuned on w0 ≥ τ")
ax1.set_xlabel("threshold τ on w0")
ax1.set_ylabel("test accuracy (%)")
ax1.legend(loc="lower left")
sns.lineplot(data=sub, x="tau", y="data_pct", errorbar="sd", marker="o", ax=ax2, color="C1")
ax2.set_xlabel("threshold τ on w0")
ax2.set_ylabel("training clips kept (%)")
fig.suptitle(f"Data purification on {dataset} ({cfg.name} preset, {len(seeds)} seed(s))")
fig.tight_layout()
atomic.save_figure(fig, out / "purification.png", dpi=120)
plt.show()

# %% [markdown]
# ## What this run shows
# Computed from the table: a threshold counts as a gain only when it beats the 100 % control by more than
# the larger std over seeds.

# %%
findings = ex.describe_purification(rows)
print(findings)
by_tau = rows[rows["tau"] > 0].groupby("tau")["acc"].mean().dropna()
best_tau = float(by_tau.idxmax()) if len(by_tau) else 0.0  # every threshold left too few clips: the baseline
metrics = {
    "protocol": card.to_dict(),
    "notebook": "06_purification",
    "dataset": dataset,
    "preset": cfg.name,
    "seeds": seeds,
    "device": str(dev),
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": cfg.name, "seed": seed, "seeds": seeds,
                   "device": str(dev), "taus": taus, "finetune_epochs": cfg.train.finetune_epochs, "fresh": fresh,
                   "workers": workers},
    "config": cfg.to_dict(),
    "table": rows.groupby("tau").agg(data_pct=("data_pct", "mean"), acc=("acc", "mean"), acc_std=("acc", "std"),
                                     f1=("f1", "mean"), acc_a=("acc_a", "mean"), acc_v=("acc_v", "mean"))
                 .reset_index().to_dict(orient="records"),
    "baseline": {m: float(rows.loc[rows["tau"] == 0, m].mean()) for m in ex.METRICS},
    "warmup_accuracy": float(rows.drop_duplicates("seed")["warmup_acc"].astype(float).mean()),
    "best_tau": best_tau,
    "accuracy": float(rows[rows["tau"] == best_tau]["acc"].mean()),
    "macro_f1": float(rows[rows["tau"] == best_tau]["f1"].mean()),
    "acc_audio": float(rows[rows["tau"] == best_tau]["acc_a"].mean()),
    "acc_visual": float(rows[rows["tau"] == best_tau]["acc_v"].mean()),
    "findings": findings,
    "timings": {"total_seconds": time.perf_counter() - t_start, "sweep_seconds": sweep_seconds,
                "seconds_per_finetune": float(rows["seconds"].mean())},
}
print("wrote", paths.shown(write_metrics(out, metrics)))

# %% [markdown]
# ## Try this
#
# Each change goes in the parameters cell (the first code cell); then Run > Restart Kernel and Run All Cells.
# From a shell, papermill takes the same change as `-p NAME VALUE` (in brackets).
#
# - `finetune_epochs = 10` (`-p finetune_epochs 10`): does the gap between purified and 100 % fine-tuning grow
#   or vanish with longer fine-tuning?
# - In notebook 03's BIC table, compare the prob and KL rows' imbalanced weight π1: would a threshold on the KL
#   gap's w0 select a different subset? (This notebook selects on the prob gap; notebook 03 fits both.)
# - `taus = [0.99, 0.999]` (`-p taus '[0.99, 0.999]'`): how far can the selection go before too few clips are
#   left?
# - On the embedded dataset the imbalanced clips are known: in notebook 03, check how many of them the
#   threshold you like best would have removed (the AUROC of w1 answers it in one number).
#
# **Check your answers:** `python -m mmgap.answers 06 --preset <preset>` computes each answer above from your runs
# (or names the run still missing and the command that makes it).
