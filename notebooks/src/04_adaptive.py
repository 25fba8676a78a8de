# %% [markdown]
# # 04 · Adaptive training: pulling imbalanced samples back (Eq. 11)
#
# **The question of this notebook:** notebook 03 showed that after warm-up some clips are decided by audio
# alone, and that a two-component mixture finds them. Can we use that soft split to *train* differently,
# so that the imbalanced subgroup shrinks and the weaker (visual) branch learns more?
#
# The second stage of the paper minimises, for each training sample $i$,
#
# $$\mathcal{L}_{\text{adap}}^i = \alpha\, w_{i,0}\, \mathcal{L}_f + \lambda_t \big(\beta\,|g_i|^2 + \gamma\, w_{i,1}\,|g_i - \mu_0|^2 + \mathcal{L}_a + \mathcal{L}_v\big), \qquad \lambda_t = \rho^{\text{epoch}}. \qquad (11)$$
#
# - $w_{i,0}, w_{i,1}$ (Eq. 9): balanced samples ($w_{i,0}\to 1$) mostly train the fused prediction;
# - imbalanced samples ($w_{i,1}\to 1$) are pulled towards the balanced component's mean $\mu_0$
#   (in raw gap units) by $|g_i - \mu_0|^2$, where $g_i$ is the differentiable gap of Eq. 5 (or 6);
# - $\beta |g_i|^2$ penalises large gaps for every sample;
# - $\lambda_t$ anneals the corrective terms: strong early, weaker later (Table VI varies $\rho$).
#
# The gradient of the gap terms on the weak branch (Eq. 14) is
# $\nabla_{\theta^v} \mathcal{L}_{\text{gap}}^i = -2\,[w_{i,1}(g_i - \mu_0) + \beta g_i]\, \nabla_{\theta^v} s_i^v$:
# large exactly for the imbalanced samples, which pushes their visual confidence up.
#
# **Alternating refits.** At the start of the stage, and every `refit_every` epochs after, the gaps of the
# whole training set are recomputed, z-scored (Eq. 7), the mixture refitted (Eq. 8) and the posteriors
# updated (Eq. 9). The optimizer is reset between the stages by default (Table IV).

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" | "crema_d" | "ave" | "kinetics_sounds" | "generic"
data_dir = None  # str | None: the raw dataset folder (None: data/<dataset>; the embedded one is generated there)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (minutes on a CPU) | "paper" (GPU, real datasets)
seed = 0  # int, non-negative: seeds initialisation, batch order and augmentation (and picks the warm-up run)
device = "auto"  # str: "auto" (CUDA when present, else CPU) | "cpu" | "cuda"
# Eq. 11's hyperparameters. None means "the preset's value" (printed below; the paper's defaults).
rho = None  # float in (0, 1] or None: annealing rate ρ of λ_t, which is ρ^epoch (preset: 0.95)
alpha = None  # float, non-negative, or None: weight of w0·L_f (preset: 1.0)
beta = None  # float, non-negative, or None: weight of |g|² (preset: 0.1)
gamma = None  # float, non-negative, or None: weight of w1·|g − μ0|² (preset: 1.0)
gap = None  # str or None: "prob" (Eq. 5) | "kl" (Eq. 6) (preset: "prob")
mixture = None  # str or None: "gmm" | "smm" (Student-t) | "lmm" (Laplace) (preset: "gmm")
refit_every = None  # int, at least 1, or None: refit the mixture every K adaptive epochs (preset: 1)
optimizer = None  # str or None: "sgd" | "adam" (Adam: 0.2 x the SGD rate and an Adam warm-up) (preset: "sgd")
reset_optimizer = None  # bool or None: fresh optimizer state at the stage change (preset: True)
tsne_points = 300  # int, at least 10: test clips in the t-SNE of Fig. 4 (t-SNE cost grows fast with this)

# %% tags=["validation"]
# Validate the parameters first (papermill does no type checking): a bad value stops here with a clear message.
from mmgap import experiments
from mmgap.config import ConfigError, get_preset

experiments.check_common(dataset, seed, device)  # ConfigError names a bad dataset, seed or device
if isinstance(tsne_points, bool) or not isinstance(tsne_points, int) or tsne_points < 10:
    raise ConfigError(f"tsne_points={tsne_points!r} must be an integer >= 10")
overrides = {k: v for k, v in dict(rho=rho, alpha=alpha, beta=beta, gamma=gamma, gap=gap, mixture=mixture,
                                   refit_every=refit_every, optimizer=optimizer,
                                   reset_optimizer=reset_optimizer).items() if v is not None}
for name in ("rho", "alpha", "beta", "gamma"):
    if name in overrides and (isinstance(overrides[name], bool) or not isinstance(overrides[name], (int, float))):
        raise ConfigError(f"{name}={overrides[name]!r} must be a number (or None for the preset's value)")
if "reset_optimizer" in overrides and not isinstance(reset_optimizer, bool):
    raise ConfigError(f"reset_optimizer={reset_optimizer!r} must be True or False (or None for the preset's value)")
if overrides.get("optimizer") == "adam":  # the presets' SGD rates make Adam diverge (see mmgap.experiments)
    overrides["lr"] = experiments.adam_lr_for(get_preset(preset))
cfg = get_preset(preset, **overrides)  # ConfigError names any out-of-range value (rho 1.5, gap foo, ...)
t = cfg.train
print(f"dataset={dataset}, preset={cfg.name}, seed={seed}, device={device}")
print(f"Eq. 11: rho={t.rho}, alpha={t.alpha}, beta={t.beta}, gamma={t.gamma}, gap={t.gap}, mixture={t.mixture}, "
      f"refit_every={t.refit_every}, optimizer={t.optimizer} (lr {t.lr}), reset_optimizer={t.reset_optimizer}")
print(f"schedule: {t.warmup_epochs} warm-up epochs, then {t.adaptive_epochs} adaptive epochs")

# %%
import hashlib
import json
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from mmgap import paths, plots, results
from mmgap.data import prepare
from mmgap.gap import compute_gap, zscore
from mmgap.losses import AdaptiveLossConfig
from mmgap.mixture import fit_mixture
from mmgap.train import run_two_stage

t_start = time.perf_counter()
cache = prepare(dataset, data_dir, cfg, seed)  # built by notebook 01, or built now (printed) when missing
setting = json.dumps({"config": cfg.to_dict(), "data": cache.path.name}, sort_keys=True)
key = f"{t.gap}-{t.mixture}-rho{t.rho:g}-{hashlib.sha256(setting.encode()).hexdigest()[:8]}"
run = paths.run_dir(cfg.name, "04_adaptive", f"{dataset}-seed{seed}", key)
print("results go to", run)

# %% [markdown]
# ## 1. Warm-up (reused) and adaptive training
#
# The warm-up checkpoint of notebook 02 is reused when it matches (same data, model and warm-up schedule);
# otherwise it is trained now, with a note. A finished adaptive run with exactly these settings is reused
# too (delete the run folder printed above to retrain).

# %%
warm_cfg = get_preset(preset, optimizer=t.optimizer, lr=t.lr)  # the warm-up shares only its own settings
ckpt = experiments.ensure_warmup(cache, warm_cfg, seed, device, progress=True)
print("warm-up checkpoint:", ckpt)
loss_cfg = AdaptiveLossConfig.from_train_config(t)
t0 = time.perf_counter()
res = run_two_stage(cache, cfg, run, seed=seed, device=device, loss_cfg=loss_cfg, warmup_ckpt=ckpt,
                    return_trainer=True)
t_train = time.perf_counter() - t0
trainer = res.pop("trainer")
history = res["history"]
warm_rows = [r for r in history if r["stage"] == "warmup"]
adapt_rows = [r for r in history if r["stage"] == "adaptive"]
print(f"adaptive stage: {len(adapt_rows)} epochs in {t_train:.0f} s on {res['device']}")
print(f"test accuracy (val-selected): warm-up {res['warmup'].get('test_acc', float('nan')):.3f} -> "
      f"adaptive {res['test_acc']:.3f}")

# %% [markdown]
# ## 2. How the gap distribution evolves (Fig. 5)
#
# Left: the training set's gap distribution at each refit (the colour goes from dark = first adaptive
# epoch to yellow = later), in **raw** units (Eq. 7 undone, so a shift towards zero is visible), plus the
# distribution after the last epoch. Middle and right: the mixture's weights and means at each refit.
#
# **What to look for** (the paper's Fig. 5 on CREMA-D): the imbalanced component's weight $\pi_1$
# shrinks, its mean moves towards zero, and the distribution becomes one sharp peak near zero. On
# Kinetics-Sounds the paper saw a weaker version: the bimodality stayed, but the components moved left.

# %%
gaps, mixes = plots.gap_evolution_from_history(history)
final = trainer.collect_outputs("train")  # the model as it is after the last adaptive epoch
g_final = compute_gap(t.gap, final["logit_a"], final["logit_v"], final["label"],
                      dominant=adapt_rows[-1].get("dominant", t.dominant)).numpy()
g_hat_f, mu_f, sd_f = zscore(g_final)
fit_f = fit_mixture(g_hat_f, t.mixture, seed=seed).to_dict()
fit_f_raw = {**fit_f, "means": [mu_f + sd_f * m for m in fit_f["means"]], "scales": [sd_f * s for s in fit_f["scales"]]}
gaps[len(adapt_rows)] = g_final
mixes[len(adapt_rows)] = fit_f_raw
unit = "probability difference" if t.gap == "prob" else "nats"
fig5 = plots.plot_gap_evolution(gaps, mixes, xlabel=f"modality gap g, raw ({t.gap}: {unit})",
                                 path=run / "fig5_gap_evolution.png")
plt.show()

evolution = pd.DataFrame([
    {"adaptive epochs done": e, "π1 (imbalanced)": m["weights"][1 - m["balanced"]],
     "μ0 (raw)": m["means"][m["balanced"]], "μ1 (raw)": m["means"][1 - m["balanced"]]}
    for e, m in sorted(mixes.items())
])
evolution["mean gap (raw)"] = [r["gap_mean"] for r in adapt_rows if r.get("refitted")] + [float(np.mean(g_final))]
auroc_by_epoch = [r.get("auroc_w1") for r in adapt_rows if r.get("refitted")]
if any(a is not None for a in auroc_by_epoch):
    evolution["AUROC w1"] = auroc_by_epoch + [None]
display(evolution.round(3))
print("saved", *[p.name for p in results.save_table(evolution.round(4), run / "table_gap_evolution")])

# %% [markdown]
# ## 3. Unimodal and fused accuracy across both stages (Fig. 6)
#
# Test accuracy per epoch of the fused prediction and of each modality's logits (Eq. 2), warm-up then
# adaptive, the stage change marked. (The test split is only watched here; checkpoints are chosen on the
# validation split.)
#
# **What to look for** (the paper's Fig. 6): during warm-up the modalities differ by 10–20 points; in the
# adaptive stage the weaker modality's accuracy rises, the two curves approach each other, and the fused
# accuracy improves with them.

# %%
fig6 = plots.plot_stage_accuracy({"warm-up (Eq. 10)": warm_rows, "adaptive (Eq. 11)": adapt_rows},
                                 acc_keys=plots.acc_keys("test"), acc_label="test accuracy (%)",
                                 path=run / "fig6_stage_accuracy.png")
plt.show()

# %% [markdown]
# ## 4. What the features look like (Fig. 4)
#
# A t-SNE map (scikit-learn) of the test clips' audio features $\varphi^a$, visual features $\varphi^v$,
# and fused features $[\varphi^a; \varphi^v]$ (the input of the classifier, Eq. 1) of the validation-selected
# adaptive model, coloured by class.
#
# **What to look for:** well separated class clusters in the fused map; the visual map shows how much
# the weak branch has learned (tight clusters = a useful visual representation).

# %%
best = trainer.load_best()
print(f"t-SNE of the adaptive model of epoch {best['epoch']} (best validation accuracy {best['val']['acc']:.3f})")
test_out = trainer.collect_outputs("test")
features = {
    "audio": test_out["feat_a"].numpy(),
    "visual": test_out["feat_v"].numpy(),
    "fused": torch.cat([test_out["feat_a"], test_out["feat_v"]], dim=1).numpy(),
}
t0 = time.perf_counter()
fig4 = plots.plot_tsne(features, test_out["label"].numpy(), class_names=cache.class_names, max_points=tsne_points,
                       seed=seed, path=run / "fig4_tsne.png")
t_tsne = time.perf_counter() - t0
plt.show()

# %% [markdown]
# ## 5. Results and an honest reading

# %%
def test_row(name: str, r: dict) -> dict:
    """Test metrics of the validation-selected epoch of a stage, in percent."""
    return {"stage": name, "best epoch": r.get("best_epoch"), "acc": 100 * r["test_acc"], "macro-F1": 100 * r["test_f1"],
            "audio acc": 100 * r["test_acc_a"], "visual acc": 100 * r["test_acc_v"]}


table = pd.DataFrame([test_row("warm-up (Eq. 10)", res["warmup"]), test_row("adaptive (Eq. 11)", res)]).round(2)
display(table)
print("saved", *[p.name for p in results.save_table(table, run / "table_warmup_vs_adaptive")])

first, last = evolution.iloc[0], evolution.iloc[-1]
checks = {
    "imbalanced weight π1 shrinks": bool(last["π1 (imbalanced)"] < first["π1 (imbalanced)"]),
    "mean gap moves towards zero": bool(abs(last["mean gap (raw)"]) < abs(first["mean gap (raw)"])),
    "visual accuracy rises": bool(res["test_acc_v"] > res["warmup"]["test_acc_v"]),
    "fused accuracy rises": bool(res["test_acc"] > res["warmup"]["test_acc"]),
}
print("The paper's phenomena, as this run shows them:")
for claim, holds in checks.items():
    print(f"  {'yes' if holds else 'NO '}  {claim}")
print(f"  π1: {first['π1 (imbalanced)']:.3f} -> {last['π1 (imbalanced)']:.3f}; "
      f"mean gap: {first['mean gap (raw)']:+.3f} -> {last['mean gap (raw)']:+.3f} ({unit})")
if not all(checks.values()):
    print("Not every phenomenon appears in this run: small presets train few epochs on a small dataset, and "
          "seeds vary (notebooks 05-07 report mean ± std over seeds).")

# %%
metrics = {
    "notebook": "04_adaptive",
    "dataset": dataset,
    "preset": cfg.name,
    "seed": seed,
    "device": res["device"],
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": preset, "seed": seed, "device": device,
                   "rho": rho, "alpha": alpha, "beta": beta, "gamma": gamma, "gap": gap, "mixture": mixture,
                   "refit_every": refit_every, "optimizer": optimizer, "reset_optimizer": reset_optimizer,
                   "tsne_points": tsne_points},
    "effective": {k: getattr(t, k) for k in ("rho", "alpha", "beta", "gamma", "gap", "mixture", "refit_every",
                                             "optimizer", "lr", "reset_optimizer", "warmup_epochs", "adaptive_epochs")},
    "config": cfg.to_dict(),
    "warmup_ckpt": str(ckpt),
    "run_dir": str(run),
    "accuracy": res["test_acc"],
    "macro_f1": res["test_f1"],
    "acc_audio": res["test_acc_a"],
    "acc_visual": res["test_acc_v"],
    "val_accuracy": res["val_acc"],
    "best_epoch": res["best_epoch"],
    "warmup": res["warmup"],
    "gap_evolution": evolution.to_dict("records"),
    "final_mixture_raw": fit_f_raw,
    "phenomena": checks,
    "timings": {**res["timings"], "adaptive_call_seconds": t_train, "tsne_seconds": t_tsne,
                "total_seconds": time.perf_counter() - t_start},
}
print("wrote", results.write_metrics(run, metrics))

# %% [markdown]
# ## Try this
#
# - `-p rho 1.0` (no annealing), then `-p rho 0.8`: compare with Table VI (notebook 05 runs the sweep over seeds).
# - `-p gap kl`: the label-free gap of Eq. 6. Does Fig. 5 look different?
# - `-p gamma 0`: drop the pull towards $\mu_0$ (a Table III row). Does $\pi_1$ still shrink?
# - `-p refit_every 3`: refit less often: cheaper, but the posteriors go stale.
# - `-p optimizer adam -p reset_optimizer False`: the "same state" row of Table IV.
