# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Warm-up: does the fused model learn both modalities?
#
# **The question of this notebook:** if we train an audio-visual classifier the standard way (one
# cross-entropy on the fused prediction), do both encoders learn? And what changes when the warm-up stage
# of the paper adds a loss per modality?
#
# The model (Section III-A) encodes each modality with its own ResNet-18, $\varphi^a$ and $\varphi^v$,
# concatenates the features and applies one linear layer:
#
# $$f(x_i) = W\,[\varphi^a(\theta^a, x_i^a);\ \varphi^v(\theta^v, x_i^v)] + b. \qquad (1)$$
#
# Splitting $W = [W^a, W^v]$ gives one logit vector per modality, whose sum is exactly $f$:
#
# $$f(x_i) = \underbrace{W^a \varphi^a(x_i^a) + \tfrac{b}{2}}_{l_i^a} +
#   \underbrace{W^v \varphi^v(x_i^v) + \tfrac{b}{2}}_{l_i^v}. \qquad (2)$$
#
# With $s^{(m)} = \mathrm{softmax}(l^{(m)})$ for $m \in \{f, a, v\}$ (Eq. 3), each branch has a
# cross-entropy $\mathcal{L}_m = \frac{1}{N}\sum_i \mathrm{CE}(y_i, s_i^{(m)})$ (Eq. 4). We compare:
#
# - **Concat baseline**: minimise $\mathcal{L}_f$ only. $l^a$ and $l^v$ are only *measured*.
# - **Warm-up** (the paper's first stage):
#
# $$\mathcal{L}_{wp} = \mathcal{L}_f + \mathcal{L}_a + \mathcal{L}_v. \qquad (10)$$
#
# - **Visual only**: the visual encoder and its own linear layer, trained alone on $\mathcal{L}_v$. It answers
#   the field's diagnostic question: how good can the visual branch get when nothing competes with it?
#
# **The imbalance margin** is the visual-only model's accuracy minus the accuracy of the visual branch
# inside the concat model, both trained for the same epochs (Table II's budget) and selected on validation.
# A large margin is *optimisation* imbalance: the visual encoder could have learned more, but inside joint
# training the audio branch satisfied the fused loss first and the visual encoder stopped receiving a useful
# gradient. This is the problem the paper and every baseline of Table II address.
#
# The concat and visual-only runs are the same runs as Table II's rows (notebook 07 reuses them); the
# warm-up checkpoint written here is the starting point of notebooks 03–07.

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" | "crema_d" | "ave" | "kinetics_sounds" | "generic"
data_dir = None  # str | None: the raw dataset folder (None: data/<dataset>; the embedded one is generated there)
rebuild = False  # bool: decode every clip again, not reusing the feature cache (after editing files in place)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (minutes on a CPU) | "paper" (GPU, real datasets)
seed = 0  # int, non-negative: seeds initialisation, batch order and augmentation
device = "auto"  # str: "auto" (CUDA when present, else CPU) | "cpu" | "cuda"
executor = "local"  # str: "local" (this machine's processes) | "ray" (a Ray cluster; see docs/cluster.md)
address = None  # str | None: the Ray cluster to join ("10.0.0.5:6379"); None: RAY_ADDRESS, else a local cluster
gpus_per_run = None  # float | None: a Ray run's share of a GPU (0.25 packs four runs on one); None: 1 if GPUs

# %% tags=["validation"]
# Validate the parameters first (papermill does no type checking): a bad value stops here with a clear message.
from mmgap import experiments

cfg, dev = experiments.check_params(globals(), notebook="02_warmup")  # ConfigError names a bad value
print(f"dataset={dataset}, preset={cfg.name}, seed={seed}, device={device}")
print(f"training: {cfg.train.warmup_epochs} epochs, {cfg.train.optimizer} lr={cfg.train.lr}, "
      f"batch {cfg.train.batch_size}, ResNet-18 width {cfg.model.width}")

# %% [markdown]
# **The protocol card** of the paper's method, whose first stage this notebook trains: every value, and who gives it
# (the paper, a method's authors, or this project's choice, with the reason), with the software that ran it.
# `metrics.json` stores it; `docs/protocol-cards.md` sets the cards of every preset and dataset side by side.

# %%
from IPython.display import display

card = experiments.protocol_card(cfg, dataset, "ours_prob", seeds=[seed], device=str(dev))
display(card.table())

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from mmgap import experiments, paths, plots, results
from mmgap.data import prepare
from mmgap.trainer import load_history, resolve_device

t_start = time.perf_counter()
run = paths.run_dir(cfg.name, "02_warmup", f"{dataset}-seed{seed}")
print("results go to", paths.shown(run), "| device:", resolve_device(device))
# built by notebook 01, or built now (printed) when missing
cache = prepare(dataset, data_dir, cfg, seed, rebuild=rebuild)
print(f"feature cache: {cache.path.name}, {cache.counts()}")

# %% [markdown]
# ## 1. Three runs: the concat baseline, the visual-only model and the warm-up (Eq. 10)
#
# Concat and visual-only train for warm-up + adaptive epochs, as every Table II row, and are selected on
# validation; notebook 07 reuses them. The warm-up trains for its own epochs into the shared folder
# `runs/<preset>/warmup/...`, where notebooks 03–07 look for it. Finished runs with the same settings are
# reused; the others train side by side, one per CPU core.

# %%
t0 = time.perf_counter()
epochs = experiments.table_ii_epochs(cfg)
root = experiments.methods_root(cfg)
jobs = [(experiments.ensure_warmup, {"preset": cfg, "seed": seed, "device": device}),
        *[(experiments.baseline_one, {"preset": cfg, "method": name, "seed": seed, "root": root,
                                      "epochs": epochs, "device": device}) for name in ("concat", "visual_only")]]
warm_ckpt, concat, visual = experiments.run_jobs(cache, jobs, experiments.default_workers(device), desc="runs",
                                                 executor=executor, address=address, gpus_per_run=gpus_per_run)
failed = {n: r["error"] for n, r in (("concat", concat), ("visual_only", visual)) if r.get("error")}
if failed:
    raise RuntimeError(f"training failed: {failed}")
concat["history"] = load_history(concat["run_dir"])
warm = experiments.warmup_result(warm_ckpt)
t_runs = time.perf_counter() - t0
print(f"concat: test acc {concat['acc']:.3f} (audio branch {concat['acc_a']:.3f}, "
      f"visual branch {concat['acc_v']:.3f}); "
      f"visual only: test acc {visual['acc']:.3f}  ({epochs} epochs each)")
print(f"warm-up: best val acc {warm['val_acc']:.3f} at epoch {warm['best_epoch'] + 1} of {cfg.train.warmup_epochs} "
      f"(counted from 1), test acc {warm['test_acc']:.3f}; budgets differ: warm-up {cfg.train.warmup_epochs} epochs, "
      f"concat {epochs}")
print(f"warm-up checkpoint: {paths.shown(warm_ckpt)}  (all three ready in {t_runs:.0f} s)")

# %% [markdown]
# ## 3. Branch losses and accuracies (Fig. 1)
#
# Top: the training cross-entropy of the fused prediction and of each modality's logits (Eq. 4), per
# epoch. Bottom: accuracy on the validation split per epoch (the split checkpoints are selected on; the
# test split is evaluated only at the selectable epochs of Table II's runs). The concat run trains for
# Table II's budget, the warm-up for its own epochs.
#
# **What to look for** (the paper's Fig. 1, which it draws for OGM-GE's training; here the same reading on the
# concat baseline, its simplest form): one modality's loss falls while the other's stays high: the dominant
# modality (audio here) is learned first and the fused loss is satisfied
# without the weaker one, whose encoder then stops learning. The warm-up loss gives the visual encoder its
# own gradient, so its loss and accuracy should move.

# %%
fig1 = plots.plot_branch_losses(
    {"concat baseline (L_f only)": concat["history"], "warm-up (Eq. 10)": warm["history"]},
    acc_keys=plots.acc_keys("val"), acc_label="validation accuracy (%)", path=run / "fig1_branch_losses.png",
)
plt.show()

# %% [markdown]
# At the same epoch (the warm-up's last), concat against warm-up, on the validation split:

# %%
n_warm = cfg.train.warmup_epochs
last_c = next(r for r in concat["history"] if r["stage_epoch"] == n_warm - 1)  # concat at the same epoch
last_w = warm["history"][-1]


def val_row(name: str, r: dict) -> dict:
    """Validation metrics of a history row (an epoch), in percent."""
    return {"method": name, "epoch": r["epoch"] + 1, "acc": 100 * r["val_acc"], "macro-F1": 100 * r["val_f1"],
            "audio acc": 100 * r["val_acc_a"], "visual acc": 100 * r["val_acc_v"]}


table = pd.DataFrame([val_row("Concat (L_f)", last_c), val_row("Warm-up (L_f + L_a + L_v)", last_w)]).round(2)
display(table)
print("saved", *[p.name for p in results.save_table(table, run / "table_concat_vs_warmup")])
gap_c = 100 * (last_c["val_acc_a"] - last_c["val_acc_v"])
gap_w = 100 * (last_w["val_acc_a"] - last_w["val_acc_v"])
print(f"audio minus visual validation accuracy at epoch {n_warm}: concat {gap_c:+.1f} points, "
      f"warm-up {gap_w:+.1f} points")
print(f"visual training loss at epoch {n_warm}: concat {last_c['train_uni_v']:.3f}, "
      f"warm-up {last_w['train_uni_v']:.3f} nats")

# %% [markdown]
# ## 4. The imbalance margin
#
# The visual-only model against the visual branch of the concat model, both at their validation-selected
# epoch after Table II's budget. On the embedded data the accuracy is also split by the ground-truth visual
# tier (notebook 01): only `clean` and `hard` pictures can be learned; `corrupt` ones stay at chance (10 %).

# %%
tiers = [t for t in ("clean", "hard", "corrupt") if f"acc_v_{t}" in visual]
margin_rows = [{"model": name, "visual acc": 100 * r["acc_v"],
                **{f"visual acc, {t}": 100 * r[f"acc_v_{t}"] for t in tiers}}
               for name, r in (("Visual only (L_v alone)", visual), ("Visual branch inside concat (L_f)", concat))]
margin_table = pd.DataFrame(margin_rows).round(2)
display(margin_table)
print("saved", *[p.name for p in results.save_table(margin_table, run / "table_imbalance_margin")])
margin = visual["acc_v"] - concat["acc_v"]
print(f"imbalance margin: {100 * margin:+.1f} points (visual only {100 * visual['acc_v']:.1f} % "
      f"- visual branch in concat {100 * concat['acc_v']:.1f} %)")

# %% [markdown]
# **Reading the numbers.** The imbalance margin says how much the visual encoder *could* learn but does not,
# inside joint training: a positive margin of several points is optimisation imbalance, and the larger
# it is, the more a method that rebalances training has to win. A margin near zero would mean the visual
# branch learns as well jointly as alone, and no rebalancing method could help it. The audio-minus-visual
# gap after warm-up is the per-branch view of the same problem: the paper's Fig. 6 shows 10–20 points on its
# datasets; the embedded data's gap is far larger by design (audio is learned almost perfectly, and a fifth of
# the pictures carry no digit), so compare it with the margin, not with the paper. A large gap means many
# samples are decided by audio alone, which is what notebook 03 quantifies sample by sample. The test
# accuracies of the two models are not a race either: concat trains for Table II's budget and the warm-up for
# its own (the cell below prints both), so a warm-up below concat can simply be the shorter run.

# %%
metrics = {
    "protocol": card.to_dict(),
    "notebook": "02_warmup",
    "dataset": dataset,
    "preset": cfg.name,
    "seed": seed,
    "device": str(resolve_device(device)),
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": preset, "seed": seed, "device": device},
    "config": cfg.to_dict(),
    "cache": cache.path.name,
    "warmup_ckpt": str(warm_ckpt),
    "concat": {k: concat[k] for k in ("acc", "f1", "acc_a", "acc_v", "val_acc", *[f"acc_v_{t}" for t in tiers])},
    "visual_only": {k: visual[k] for k in ("acc", "acc_v", "val_acc", *[f"acc_v_{t}" for t in tiers])},
    "imbalance_margin": margin,
    "warmup": {k: warm[k] for k in ("best_epoch", "val_acc", "test_acc", "test_f1", "test_acc_a", "test_acc_v")},
    "accuracy": warm["test_acc"],
    "macro_f1": warm["test_f1"],
    "acc_audio": warm["test_acc_a"],
    "acc_visual": warm["test_acc_v"],
    "audio_minus_visual_at_warmup_end": {"concat": gap_c / 100, "warmup": gap_w / 100},
    "timings": {"runs_seconds": t_runs, "total_seconds": time.perf_counter() - t_start,
                **warm["timings"]},
}
print("wrote", paths.shown(results.write_metrics(run, metrics)))

# %% [markdown]
# ## Try this
#
# Each change goes in the parameters cell (the first code cell); then Run > Restart Kernel and Run All Cells.
# From a shell, papermill takes the same change as `-p NAME VALUE` (in brackets).
#
# - `seed = 1` (`-p seed 1`): how much do the curves move between seeds? (Notebooks 05–07 report mean ± std
#   for this reason.)
# - `preset = "paper"` on a GPU with CREMA-D (`dataset = "crema_d"`, `data_dir = ...`; `-p preset paper -p
#   dataset crema_d -p data_dir ...`): the paper's setting.
# - Compare the concat baseline's visual accuracy with the warm-up's: how much does the unimodal loss
#   $\mathcal{L}_v$ alone buy? Is the warm-up's visual branch closer to the visual-only model?
# - Which tier makes the margin: `clean` or `hard`? Which one would you expect a rebalancing method to help?
# - Open `runs/<preset>/02_warmup/.../metrics.json`: every number printed here is stored there.
#
# **Check your answers:** `python -m mmgap.answers 02 --preset <preset>` computes each answer above from your runs
# (or names the run still missing and the command that makes it).
