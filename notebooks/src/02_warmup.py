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
# $$f(x_i) = \underbrace{W^a \varphi^a(x_i^a) + \tfrac{b}{2}}_{l_i^a} + \underbrace{W^v \varphi^v(x_i^v) + \tfrac{b}{2}}_{l_i^v}. \qquad (2)$$
#
# With $s^{(m)} = \mathrm{softmax}(l^{(m)})$ for $m \in \{f, a, v\}$ (Eq. 3), each branch has a
# cross-entropy $\mathcal{L}_m = \frac{1}{N}\sum_i \mathrm{CE}(y_i, s_i^{(m)})$ (Eq. 4). We compare:
#
# - **Concat baseline**: minimise $\mathcal{L}_f$ only. $l^a$ and $l^v$ are only *measured*.
# - **Warm-up** (the paper's first stage):
#
# $$\mathcal{L}_{wp} = \mathcal{L}_f + \mathcal{L}_a + \mathcal{L}_v. \qquad (10)$$
#
# Both get the same number of epochs, the same optimizer and the same data order. The warm-up checkpoint
# written here is the starting point of notebooks 03–07.

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" | "crema_d" | "ave" | "kinetics_sounds" | "generic"
data_dir = None  # str | None: the raw dataset folder (None: data/<dataset>; the embedded one is generated there)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (minutes on a CPU) | "paper" (GPU, real datasets)
seed = 0  # int, non-negative: seeds initialisation, batch order and augmentation
device = "auto"  # str: "auto" (CUDA when present, else CPU) | "cpu" | "cuda"

# %% tags=["validation"]
# Validate the parameters first (papermill does no type checking): a bad value stops here with a clear message.
from mmgap import experiments
from mmgap.config import ConfigError, get_preset

experiments.check_common(dataset, seed, device)  # ConfigError names a bad dataset, seed or device
cfg = get_preset(preset)  # ConfigError for an unknown preset
print(f"dataset={dataset}, preset={cfg.name}, seed={seed}, device={device}")
print(f"training: {cfg.train.warmup_epochs} epochs, {cfg.train.optimizer} lr={cfg.train.lr}, "
      f"batch {cfg.train.batch_size}, ResNet-18 width {cfg.model.width}")

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from mmgap import baselines, experiments, paths, plots, results
from mmgap.data import prepare
from mmgap.train import resolve_device, run_warmup, train_baseline

t_start = time.perf_counter()
run = paths.run_dir(cfg.name, "02_warmup", f"{dataset}-seed{seed}")
print("results go to", run, "| device:", resolve_device(device))
cache = prepare(dataset, data_dir, cfg, seed)  # built by notebook 01, or built now (printed) when missing
print(f"feature cache: {cache.path.name}, {cache.counts()}")

# %% [markdown]
# ## 1. The concat baseline (joint cross-entropy only)
#
# A finished run in the same folder is reused (delete the folder to retrain).

# %%
t0 = time.perf_counter()
concat = train_baseline(cache, cfg, baselines.get("concat"), run / "concat", seed=seed,
                        epochs=cfg.train.warmup_epochs, device=device)
t_concat = time.perf_counter() - t0
print(f"concat: best val acc {concat['val_acc']:.3f} at epoch {concat['best_epoch']}, "
      f"test acc {concat['test_acc']:.3f} ({t_concat:.0f} s)")

# %% [markdown]
# ## 2. The warm-up (Eq. 10)
#
# The checkpoint goes to the shared warm-up folder `runs/<preset>/warmup/...`, where notebooks 03–07 look
# for it (a finished, compatible one is reused).

# %%
t0 = time.perf_counter()
warm_dir = experiments.warmup_dir(cfg, cache, seed)
warm = run_warmup(cache, cfg, warm_dir, seed=seed, device=device)
t_warm = time.perf_counter() - t0
print(f"warm-up: best val acc {warm['val_acc']:.3f} at epoch {warm['best_epoch']}, "
      f"test acc {warm['test_acc']:.3f} ({t_warm:.0f} s)")
print("warm-up checkpoint:", warm["warmup_ckpt"])

# %% [markdown]
# ## 3. Branch losses and accuracies (Fig. 1)
#
# Top: the training cross-entropy of the fused prediction and of each modality's logits (Eq. 4), per
# epoch. Bottom: accuracy on the test split per epoch (shown for insight; checkpoints are selected on the
# validation split only).
#
# **What to look for** (the paper's Fig. 1): with the concat baseline, one modality's loss falls while the
# other's stays high: the dominant modality (audio here) is learned first and the fused loss is satisfied
# without the weaker one, whose encoder then stops learning. The warm-up loss gives the visual encoder its
# own gradient, so its loss and accuracy should move.

# %%
fig1 = plots.plot_branch_losses(
    {"concat baseline (L_f only)": concat["history"], "warm-up (Eq. 10)": warm["history"]},
    acc_keys=plots.acc_keys("test"), acc_label="test accuracy (%)", path=run / "fig1_branch_losses.png",
)
plt.show()

# %%
def test_row(name: str, res: dict) -> dict:
    """Test metrics of the validation-selected epoch, in percent."""
    return {"method": name, "best epoch": res["best_epoch"], "acc": 100 * res["test_acc"], "macro-F1": 100 * res["test_f1"],
            "audio acc": 100 * res["test_acc_a"], "visual acc": 100 * res["test_acc_v"]}


table = pd.DataFrame([test_row("Concat (L_f)", concat), test_row("Warm-up (L_f + L_a + L_v)", warm)]).round(2)
display(table)
print("saved", *[p.name for p in results.save_table(table, run / "table_concat_vs_warmup")])

last_c, last_w = concat["history"][-1], warm["history"][-1]
gap_c = 100 * (last_c["test_acc_a"] - last_c["test_acc_v"])
gap_w = 100 * (last_w["test_acc_a"] - last_w["test_acc_v"])
print(f"audio minus visual test accuracy at the last epoch: concat {gap_c:+.1f} points, warm-up {gap_w:+.1f} points")
print(f"visual training loss at the last epoch: concat {last_c['train_uni_v']:.3f}, warm-up {last_w['train_uni_v']:.3f} nats")

# %% [markdown]
# **Reading the numbers.** The printed gap between audio and visual accuracy is this run's measure of
# modality imbalance. The paper reports gaps of 10–20 points after warm-up; a large gap means many
# samples are decided by audio alone, which is what notebook 03 quantifies sample by sample.

# %%
metrics = {
    "notebook": "02_warmup",
    "dataset": dataset,
    "preset": cfg.name,
    "seed": seed,
    "device": str(resolve_device(device)),
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": preset, "seed": seed, "device": device},
    "config": cfg.to_dict(),
    "cache": cache.path.name,
    "warmup_ckpt": warm["warmup_ckpt"],
    "concat": {k: concat[k] for k in ("best_epoch", "val_acc", "test_acc", "test_f1", "test_acc_a", "test_acc_v")},
    "warmup": {k: warm[k] for k in ("best_epoch", "val_acc", "test_acc", "test_f1", "test_acc_a", "test_acc_v")},
    "accuracy": warm["test_acc"],
    "macro_f1": warm["test_f1"],
    "acc_audio": warm["test_acc_a"],
    "acc_visual": warm["test_acc_v"],
    "audio_minus_visual_last_epoch": {"concat": gap_c / 100, "warmup": gap_w / 100},
    "timings": {"concat_seconds": t_concat, "warmup_seconds": t_warm, "total_seconds": time.perf_counter() - t_start,
                **warm["timings"]},
}
print("wrote", results.write_metrics(run, metrics))

# %% [markdown]
# ## Try this
#
# - `-p seed 1`: how much do the curves move between seeds? (Notebooks 05–07 report mean ± std for this reason.)
# - `-p preset paper` on a GPU with CREMA-D (`-p dataset crema_d -p data_dir ...`): the paper's setting.
# - Compare the concat baseline's visual accuracy with the warm-up's: how much does the unimodal loss
#   $\mathcal{L}_v$ alone buy?
# - Open `runs/<preset>/02_warmup/.../metrics.json`: every number printed here is stored there.
