# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Which samples are imbalanced? Modality gaps and a two-component mixture
#
# **The question of this notebook:** after warm-up, can we tell, *sample by sample*, whether a clip is
# decided by both modalities or by the dominant one alone, without any label saying so?
#
# **The modality gap** (Section III-B). With $s^{(m)}_{y_i}$ the probability that branch $m$ gives the
# true class (Eq. 3), the *prob gap* is the confidence difference between audio (assumed dominant) and
# visual:
#
# $$g_i = s_{y_i}^a - s_{y_i}^v \qquad (5)$$
#
# and the *KL gap* compares how far each branch's prediction is from the uniform distribution
# $\mathcal{U}$ (no label needed):
#
# $$g_i = D_{KL}(s_i^a \,\|\, \mathcal{U}) - D_{KL}(s_i^v \,\|\, \mathcal{U}). \qquad (6)$$
#
# $g_i > 0$: audio is more confident; $g_i \approx 0$: balanced. Both are z-scored over the training set,
#
# $$\hat g_i = (g_i - \mu_g)/\sigma_g, \qquad (7)$$
#
# and the paper's hypothesis is that $\{\hat g_i\}$ is **bimodal**: a main peak of balanced samples (near
# zero in *raw* gap units, $g \approx 0$; after z-scoring it sits below zero, since Eq. 7 subtracts the mean
# of all gaps) and a secondary bump of imbalanced ones at positive gaps. A two-component mixture models it,
#
# $$p(g\mid\Theta) = \pi_0\,\mathcal{N}(g\mid\mu_0,\sigma_0^2) + \pi_1\,\mathcal{N}(g\mid\mu_1,\sigma_1^2), \qquad (8)$$
#
# (Gaussian here; Student-t and Laplace components are the alternatives of Table V). The paper calls the
# balanced component "the primary peak concentrated around zero" and the imbalanced one the peak
# "deviating from zero": a matter of **location**, so $k=0$ is the component whose mean lies nearest a
# *raw* gap of 0 (both branches equally sure; in z-score units that is $-\mu_g/\sigma_g$), whatever its weight
# ($\pi_1$ may exceed one half on a dataset where most clips are imbalanced). Where the dominant modality leads
# in every clip this is the component with the smaller mean; a subgroup whose *other* branch leads (raw gaps
# below 0) is imbalanced too, not balanced.
# Bayes' rule gives each sample's soft membership:
#
# $$w_{i,0} = \frac{\pi_0\,\mathcal{N}(\hat g_i\mid\mu_0,\sigma_0^2)}
#   {\sum_k \pi_k\,\mathcal{N}(\hat g_i\mid\mu_k,\sigma_k^2)}, \qquad w_{i,1} = 1 - w_{i,0}. \qquad (9)$$
#
# On the embedded dataset we *know* each clip's visual tier (notebook 01: `clean`, `hard`, `corrupt`), so we
# can check whether $w_{i,1}$ finds the imbalanced ones, `hard` and `corrupt` (AUROC). On a real dataset there
# is no such ground truth, and the mixture is all we have.

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" | "crema_d" | "ave" | "kinetics_sounds" | "generic"
data_dir = None  # str | None: the raw dataset folder (None: data/<dataset>; the embedded one is generated there)
rebuild = False  # bool: decode every clip again, not reusing the feature cache (after editing files in place)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (minutes on a CPU) | "paper" (GPU, real datasets)
seed = 0  # int, non-negative: which warm-up run (seed) to analyse
device = "auto"  # str: "auto" (CUDA when present, else CPU) | "cpu" | "cuda"
mixture = "gmm"  # str: mixture family for Fig. 3 and the posteriors: "gmm" | "smm" (Student-t) | "lmm" (Laplace)
top_k = 4  # int, at least 1: how many of the most imbalanced clips to show and play

# %% tags=["validation"]
# Validate the parameters first (papermill does no type checking): a bad value stops here with a clear message.
from mmgap import experiments

cfg, dev = experiments.check_params(globals(), notebook="03_gap_fitting")  # ConfigError names a bad value
print(f"dataset={dataset}, preset={cfg.name}, seed={seed}, mixture={cfg.train.mixture}")

# %% [markdown]
# **The protocol card** of the paper's method, whose gaps and mixture this notebook fits: every value, and who gives it
# (the paper, a method's authors, or this project's choice, with the reason), with the software that ran it.
# `metrics.json` stores it; `docs/protocol-cards.md` sets the cards of every preset and dataset side by side.

# %%
from IPython.display import display

card = experiments.protocol_card(cfg, dataset, "ours_prob", seeds=[seed], device=str(dev))
display(card.table())

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from sklearn.metrics import roc_auc_score

from mmgap import atomic, paths, plots, results
from mmgap.checkpoint import load_safe
from mmgap.data import embedded, prepare
from mmgap.data.decode import read_audio
from mmgap.data.prepare import build_dataset_manifest, embedded_root
from mmgap.gap import compute_gap, pick_dominant, true_class_prob, zscore
from mmgap.mixture import AmbiguousBalancedWarning, bimodality, fit_mixture
from mmgap.trainer import Trainer

t_start = time.perf_counter()
run = paths.run_dir(cfg.name, "03_gap_fitting", f"{dataset}-seed{seed}")
print("results go to", paths.shown(run))
# built by notebook 01, or built now (printed) when missing
cache = prepare(dataset, data_dir, cfg, seed, rebuild=rebuild)
flags_all = None if cache.imbalanced is None else np.asarray(cache.imbalanced, dtype=bool)
tiers_all = None if cache.visual_tier is None else np.asarray(cache.visual_tier)

# %% [markdown]
# ## 1. The warmed-up model's predictions on the training set
#
# The warm-up checkpoint of notebook 02 is reused when it exists and matches this preset; otherwise it is
# trained now (with a printed note). We then run the model over the whole **training** split in evaluation
# mode (centre frames): the mixture is fitted where the adaptive stage will use it.

# %%
t0 = time.perf_counter()
ckpt = experiments.ensure_warmup(cache, cfg, seed, device, progress=True)
print("warm-up checkpoint:", paths.shown(ckpt))
trainer = Trainer(cache, cfg, run, seed=seed, device=device, progress=False)
trainer.model.load_state_dict(load_safe(ckpt)["model"])
out = trainer.collect_outputs("train")
rows = out["index"].numpy()
y = out["label"]
dominant = cfg.train.dominant
if dominant == "auto":
    dominant = pick_dominant(out["logit_a"], out["logit_v"], y)
s_a = true_class_prob(out["logit_a"], y).numpy()
s_v = true_class_prob(out["logit_v"], y).numpy()
gaps = {kind: compute_gap(kind, out["logit_a"], out["logit_v"], y, dominant=dominant).numpy()
        for kind in ("prob", "kl")}
flags = None if flags_all is None else flags_all[rows]
tiers = None if tiers_all is None else tiers_all[rows]
truth = tiers if tiers is not None else flags  # what the figures colour by: visual tiers, or flags
t_gaps = time.perf_counter() - t0
print(f"{len(rows)} training clips, dominant modality: {dominant} ({t_gaps:.1f} s)")
print(f"mean true-class probability: audio {s_a.mean():.3f}, visual {s_v.mean():.3f}")

# %% [markdown]
# Each dot is a training clip: its audio and visual confidence on the true class. The prob gap (Eq. 5) is
# the horizontal minus the vertical coordinate, so the diagonal is $g = 0$.
#
# **What to look for:** a cloud near the diagonal (balanced clips) and a group in the lower right (audio
# sure, visual not). On the embedded dataset the `corrupt` clips (red) should sit there, and the `hard` ones
# (orange) with them or on the way to the diagonal, depending on how far the visual branch has learned them.

# %%
fig, ax = plt.subplots(figsize=(5.2, 5.0))
for mask, label, colour in plots.ground_truth_groups(truth, len(rows)):
    ax.scatter(s_a[mask], s_v[mask], s=6, alpha=0.55, color=colour, label=label)
ax.legend(fontsize=8)
ax.plot([0, 1], [0, 1], ls=":", color="k", lw=1)
ax.set_xlabel("audio confidence on the true class $s^a_y$ (probability)")
ax.set_ylabel("visual confidence on the true class $s^v_y$ (probability)")
ax.set_title("Per-clip confidence of each branch after warm-up")
fig.tight_layout()
plots.save_figure(fig, run / "confidence_scatter.png")
plt.show()

# %% [markdown]
# ## 2. The gap distributions and their mixtures (Fig. 3)
#
# Both gaps, z-scored (Eq. 7), with the fitted two-component mixture (Eq. 8). The solid blue curve is the
# balanced component $k=0$, the dashed red one the imbalanced component $k=1$; the black curve is their
# sum. Bars are split by the ground-truth visual tier where the dataset has one.
#
# **What to look for:** a main peak (near zero in raw gap units, so below zero here, after z-scoring) and a
# second bump (or heavy right tail) to its right, at positive raw gaps. The
# paper sees this on CREMA-D after warm-up (its Fig. 3). If the histogram has one peak only, the BIC table
# below says so, and the mixture's split is less meaningful.

# %%
t0 = time.perf_counter()
fits, zs = {}, {}
for kind, g in gaps.items():
    g_hat, mu_g, sd_g = zscore(g)
    zs[kind] = (g_hat, mu_g, sd_g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AmbiguousBalancedWarning)  # reported in the table below instead
        fits[kind] = fit_mixture(g_hat, cfg.train.mixture, seed=seed)
fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2))
for ax, kind in zip(axes, ("prob", "kl"), strict=True):
    unit = "probability difference" if kind == "prob" else "nats"
    plots.plot_gap_mixture(zs[kind][0], fits[kind], flags=truth, ax=ax,
                           title=f"{kind} gap (Eq. {5 if kind == 'prob' else 6}): raw mean {zs[kind][1]:.3f}, "
                                 f"std {zs[kind][2]:.3f} ({unit})")
fig.tight_layout()
plots.save_figure(fig, run / "fig3_gap_mixture.png")
plt.show()

# %% [markdown]
# ## 3. Is the gap really bimodal? BIC of one vs two components
#
# The Bayesian information criterion $\mathrm{BIC} = -2\log L + p\log N$ trades fit against the number of
# parameters $p$. $\Delta\mathrm{BIC} = \mathrm{BIC}_1 - \mathrm{BIC}_2 > 10$ is strong evidence for two
# components. We check every family × gap pair, with the imbalanced component's weight $\pi_1$ and, on the
# embedded dataset, the AUROC of $w_1$ against the ground truth `imbalanced` = tier ≠ clean (0.5 = chance,
# 1 = perfect), for Eq. 9 as printed and for its monotone form (section 4).

# %%
rows_bic = []
posteriors = {}
for kind in ("prob", "kl"):
    g_hat = zs[kind][0]
    for family in ("gmm", "smm", "lmm"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AmbiguousBalancedWarning)
            fit = fit_mixture(g_hat, family, seed=seed)  # deterministic: the same fit as above for cfg's family
            bim = bimodality(g_hat, family, seed=seed)
        w0, w1 = fit.posterior(g_hat)
        _, w1_mono = fit.posterior(g_hat, tail="monotone")
        posteriors[(kind, family)] = (w0, w1, w1_mono)
        b, i = fit.balanced, fit.imbalanced
        graded = flags is not None and 0 < flags.sum() < len(flags)
        rows_bic.append({
            "gap": kind, "mixture": family, "BIC 1 comp.": bim["bic1"], "BIC 2 comp.": bim["bic2"],
            "ΔBIC (1 − 2)": bim["delta"], "π1 (imbalanced)": fit.weights[i], "μ0 (ẑ)": fit.means[b],
            "μ1 (ẑ)": fit.means[i],
            # ambiguous: only the warning that the balanced component cannot be named by location
            "ambiguous": any(issubclass(w.category, AmbiguousBalancedWarning) for w in caught),
            "other warnings": sum(not issubclass(w.category, AmbiguousBalancedWarning) for w in caught),
            "AUROC w1 (Eq. 9)": roc_auc_score(flags, w1) if graded else np.nan,
            "AUROC w1 (monotone)": roc_auc_score(flags, w1_mono) if graded else np.nan,
        })
bic_table = pd.DataFrame(rows_bic)
display(bic_table.round(3))
print("saved", *[p.name for p in results.save_table(bic_table.round(4), run / "table_bic")])
t_fits = time.perf_counter() - t0

# %% [markdown]
# ## 4. Posteriors (Eq. 9) and how well they find the imbalanced clips
#
# Left: $w_{i,1}$ against $\hat g_i$, coloured by visual tier: a switch from 0 (balanced) to 1 (imbalanced)
# where the two components cross. Right (embedded dataset only): the ROC curve of $w_1$ as a detector of the
# imbalanced clips.
#
# **Look at the far right of the left panel.** With unequal component widths, Eq. 9 is not monotone: when
# the balanced component is the wider one, its density falls more slowly, so beyond some point it gains
# again and $w_{i,1}$ *falls* as the gap grows. The clips with the very largest gaps, the most imbalanced of
# all, then get more of the balanced weight $w_{i,0}$ on the fusion loss and less pull towards $\mu_0$. How
# far it falls depends on the fit: the cell prints how many clips lie beyond that point and the range of
# their $w_1$ (it may stay high, or drop towards 0).
# This is Eq. 9 as printed, and this code base keeps it as the default. The black curve is an option,
# `posterior="monotone"`: Eq. 9 evaluated at the gap clipped to the interval where it is monotone, so $w_1$
# is held at its maximum beyond the imbalanced mean (`MixtureFit.posterior(..., tail="monotone")`). Table III
# (notebook 05) trains with both.

# %%
w0, w1, w1_mono = posteriors[("prob", cfg.train.mixture)]
bounds = fits["prob"].tail_bounds()
print(f"interval where Eq. 9 is monotone (ẑ units): {bounds}")
g_hat_p = np.asarray(zs["prob"][0], dtype=float)
beyond = np.zeros(len(g_hat_p), dtype=bool)
if bounds[0] is not None:
    beyond |= g_hat_p < bounds[0]
if bounds[1] is not None:
    beyond |= g_hat_p > bounds[1]
if beyond.any():
    print(f"{int(beyond.sum())} training clips lie beyond it, where Eq. 9's w1 falls: their w1 ranges "
          f"{w1[beyond].min():.2f}-{w1[beyond].max():.2f} (monotone form: {w1_mono[beyond].min():.2f}-"
          f"{w1_mono[beyond].max():.2f})")
else:
    print("no training clip lies beyond it: Eq. 9 and its monotone form agree on every clip")
fig = plots.plot_posteriors(zs["prob"][0], w1, truth, path=run / "posteriors.png", w1_monotone=w1_mono)
plt.show()
auroc = auroc_mono = None
if flags is not None and 0 < flags.sum() < len(flags):
    auroc, auroc_mono = float(roc_auc_score(flags, w1)), float(roc_auc_score(flags, w1_mono))
    pred = w1 > 0.5
    print(f"AUROC of w1 (prob gap, {cfg.train.mixture}): Eq. 9 {auroc:.3f}, monotone {auroc_mono:.3f}")
    print(f"clips with w1 > 0.5: {pred.mean():.1%}; of them truly imbalanced: "
          f"{flags[pred].mean() if pred.any() else float('nan'):.1%}; imbalanced clips found: {pred[flags].mean():.1%}")
    if tiers is not None:
        by_tier = pd.DataFrame([{"visual tier": t, "clips": int((tiers == t).sum()),
                                 "mean gap (raw)": float(gaps["prob"][tiers == t].mean()),
                                 "mean w1 (Eq. 9)": float(w1[tiers == t].mean()),
                                 "mean w1 (monotone)": float(w1_mono[tiers == t].mean()),
                                 "share with w1 > 0.5": float((w1[tiers == t] > 0.5).mean())}
                                for t in ("clean", "hard", "corrupt") if np.any(tiers == t)])
        display(by_tier.round(3))
else:
    print("no ground-truth imbalance flags for this dataset: the AUROC is not defined")

# %% [markdown]
# ## 5. The most imbalanced clips: look and listen
#
# The clips with the highest $w_{i,1}$ (prob gap; many clips can share the top value, so ties are broken
# by the larger gap towards the imbalanced component, and the cell says how many tie), followed by the most
# balanced one for contrast. For each: its frames, its audio features, the two confidences, and a player.
#
# **What to look for:** in the imbalanced clips the picture is `hard` (a small dark digit on a light
# background: easy for you to read, slow for the network to learn) or `corrupt` (no digit at all), while the
# audio tells the class; in the balanced clip both are clear.

# %%
if dataset == "embedded":
    manifest = embedded.build_manifest(embedded_root(data_dir, cfg, 0))
else:
    manifest = build_dataset_manifest(dataset, paths.resolve(data_dir) if data_dir is not None
                                      else paths.resolve(f"data/{dataset}"))
by_id = {r.clip_id: r for r in manifest.rows}
audio_p = cache.protocol["audio"]
hop_s = 0.01 if audio_p["features"] == "fbank" else audio_p["hop_length"] / audio_p["sample_rate"]
# highest w1 first; ties (clips in the flat top of w1) broken by the larger gap towards the imbalanced component
order = np.lexsort((-fits["prob"].towards_imbalanced * g_hat_p, -np.round(w1, 6)))
n_top = int(np.isclose(w1, w1[order[0]], atol=5e-7).sum())
print(f"{n_top} clip(s) share the highest w1 ({w1[order[0]]:.2f}); shown: the {top_k} with the largest gaps among the "
      "highest w1")
picked = [*order[:top_k], order[-1]]
shown = []
for rank, j in enumerate(picked):
    row = int(rows[j])
    m = by_id[cache.clip_ids[row]]
    wave = read_audio(m.audio or m.video, audio_p["sample_rate"], m.start, m.end)
    kind = f"#{rank + 1} most imbalanced" if rank < top_k else "most balanced"
    gt = "" if tiers is None else f", {tiers[j]} picture"
    title = (f"{kind}: clip {cache.clip_ids[row]} (label {cache.class_names[cache.labels[row]]}{gt}) "
             f"w1={w1[j]:.2f}, s^a={s_a[j]:.2f}, s^v={s_v[j]:.2f}")
    fig, player = plots.show_clip(cache.frames[row], cache.audio[row], wave, audio_p["sample_rate"], title=title,
                                  hop_s=hop_s,
                                  freq_label=("mel bin" if audio_p["features"] in ("logmel", "fbank")
                                              else "frequency bin"))
    plots.save_figure(fig, run / f"clip_{rank + 1}.png")
    plt.show()
    display(player)
    shown.append({"clip_id": cache.clip_ids[row], "w1": float(w1[j]), "s_a": float(s_a[j]), "s_v": float(s_v[j]),
                  "visual_tier": None if tiers is None else str(tiers[j])})

# %% [markdown]
# ## 6. Which method's per-sample score finds the imbalanced clips?
#
# **The question.** The paper's method acts on a per-sample score, $w_{i,1}$; so do the field's sample-level
# methods: SMV (CVPR 2024) gives extra single-modality copies to clips where a modality's Shapley
# contribution is low, Data Remixing (ICML 2025) trains each clip only on the modality it is less confident
# in, BSS (IJCAI 2025) trains the "balanced" clips first and the difficult ones last. Each score claims to find
# the imbalanced clips. On the embedded data we know which they are, so we can grade every score on the same
# warm-up model: AUROC (0.5 = chance, 1 = a perfect ranking, below 0.5 = inverted) against `imbalanced`, and
# separately for `hard` against `clean` (clips whose picture is learnable: the ones a rebalancing method could
# pull back) and `corrupt` against `clean` (clips whose picture carries no label: nothing can rebalance them).
# Every score is oriented so that higher means "the visual branch lags": the posterior $w_1$ (Eq. 9 and its
# monotone form), the raw gap (every threshold on it at once) and one plain threshold ($g > 0$), SMV's
# contribution deficit $\varphi_a - \varphi_v$, Remix's assignment to the visual modality (0/1) and BSS's
# difficulty (`mmgap.sample_scores`).

# %%
from mmgap import sample_scores

t0 = time.perf_counter()
score_graded = None
if tiers is not None:
    per_clip = sample_scores.per_sample_scores(out, trainer.model, cache, gap=cfg.train.gap,
                                               family=cfg.train.mixture, dominant=dominant, seed=seed)
    score_graded = sample_scores.grade(per_clip)
    display(score_graded.round(3))
    print("saved", *[p.name for p in results.save_table(score_graded.round(4).reset_index(), run / "table_scores")])
    plots.plot_score_rocs(per_clip, sample_scores.SCORES, path=run / "score_rocs.png")
    plt.show()
else:
    print("no ground-truth visual tiers for this dataset: the per-sample scores cannot be graded")
t_scores = time.perf_counter() - t0

# %% [markdown]
# **What to look for:** the left panel is the one that matters for rebalancing: a score whose curve hugs the
# diagonal there cannot tell a learnable clip whose visual branch lags from a balanced one. The right panel
# shows which scores mostly detect clips with no visual information at all.

# %%
def _grade_words(a: float) -> str:
    """How an AUROC reads: chance, weak, clear or strong separation (or an inverted ranking)."""
    if np.isnan(a):
        return "undefined"
    if a < 0.4:
        return "inverted (below chance)"
    return "near chance" if a < 0.6 else "weak" if a < 0.7 else "clear" if a < 0.85 else "strong"


if score_graded is not None:
    paper = score_graded.loc["w1 (Eq. 9)"]
    hard_best, hard_best_auc = sample_scores.best_score(score_graded, "hard vs clean")
    corrupt_best, corrupt_best_auc = sample_scores.best_score(score_graded, "corrupt vs clean")
    hard_rank = int((score_graded["AUROC hard vs clean"] > paper["AUROC hard vs clean"]).sum()) + 1
    print(f"The paper's posterior w1 (Eq. 9) separates hard from clean clips with AUROC "
          f"{paper['AUROC hard vs clean']:.3f} ({_grade_words(paper['AUROC hard vs clean'])}; rank {hard_rank} of "
          f"{len(score_graded)} scores) and corrupt from clean with {paper['AUROC corrupt vs clean']:.3f} "
          f"({_grade_words(paper['AUROC corrupt vs clean'])}). Mean w1: clean {paper['mean clean']:.2f}, hard "
          f"{paper['mean hard']:.2f}, corrupt {paper['mean corrupt']:.2f}.")
    print(f"Best on hard vs clean: {hard_best} ({hard_best_auc:.3f}); best on corrupt vs clean: {corrupt_best} "
          f"({corrupt_best_auc:.3f}).")
    gap_auc = score_graded.loc["raw gap", "AUROC hard vs clean"]
    print(f"w1 against the raw gap it is computed from (hard vs clean): {paper['AUROC hard vs clean']:.3f} vs "
          f"{gap_auc:.3f}: the mixture "
          + ("adds separation beyond ranking by the gap." if paper["AUROC hard vs clean"] > gap_auc + 0.01 else
             "ranks the clips no better than the gap itself (Eq. 9 is a function of the gap; where it is not "
             "monotone it can only lose)."))
    a_hard, a_corrupt = paper["AUROC hard vs clean"], paper["AUROC corrupt vs clean"]
    if max(a_hard, a_corrupt) < 0.6:
        print("For the paper's claim: on this warm-up the posterior separates neither the learnable (hard) nor "
              "the uninformative (corrupt) clips from the clean ones.")
    elif a_corrupt - a_hard > 0.1:
        print("For the paper's claim: the posterior's separation comes mostly from clips with no visual "
              "information, which no loss can rebalance; on the learnable (hard) clips it is weaker.")
    elif a_hard - a_corrupt > 0.1:
        print("For the paper's claim: the posterior finds the learnable (hard) clips better than the "
              "uninformative (corrupt) ones: the clips a rebalancing loss can act on.")
    else:
        print("For the paper's claim: the posterior separates the learnable (hard) clips about as well as the "
              "uninformative (corrupt) ones.")

# %% [markdown]
# ## 7. Save the gaps and the fits
#
# `gaps.npz` (cache rows, labels, raw gaps, posteriors; loads with `np.load(..., allow_pickle=False)`) and
# `metrics.json` (mixture parameters, BIC, AUROC) are what later notebooks and your own analyses can read.

# %%
atomic.write_with(run / "gaps.npz", lambda fh: np.savez(
    fh, index=rows, label=y.numpy(), g_prob=gaps["prob"], g_kl=gaps["kl"],
    s_a=s_a, s_v=s_v, w0=w0, w1=w1, w1_monotone=w1_mono,
    imbalanced=flags if flags is not None else np.zeros(0, bool),
    visual_tier=tiers if tiers is not None else np.zeros(0, str)))
bim_main = bic_table[(bic_table["gap"] == "prob") & (bic_table["mixture"] == cfg.train.mixture)].iloc[0]
metrics = {
    "protocol": card.to_dict(),
    "notebook": "03_gap_fitting",
    "dataset": dataset,
    "preset": cfg.name,
    "seed": seed,
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": preset, "seed": seed, "device": device,
                   "mixture": mixture, "top_k": top_k},
    "warmup_ckpt": str(ckpt),
    "dominant": dominant,
    "n_train": int(len(rows)),
    "mean_confidence": {"audio": float(s_a.mean()), "visual": float(s_v.mean())},
    "gap_stats": {k: {"mean": zs[k][1], "std": zs[k][2]} for k in zs},
    "fits": {k: fits[k].to_dict() for k in fits},
    "bic": {"bic1": float(bim_main["BIC 1 comp."]), "bic2": float(bim_main["BIC 2 comp."]),
            "delta": float(bim_main["ΔBIC (1 − 2)"])},
    "bic_table": bic_table.to_dict("records"),
    "auroc_w1": auroc,
    "auroc_w1_monotone": auroc_mono,
    "tail_bounds": list(fits["prob"].tail_bounds()),
    "frac_w1_above_half": float((w1 > 0.5).mean()),
    "most_imbalanced": shown,
    "sample_scores": None if score_graded is None else score_graded.reset_index().to_dict("records"),
    "timings": {"gaps_seconds": t_gaps, "fits_seconds": t_fits, "scores_seconds": t_scores,
                "total_seconds": time.perf_counter() - t_start},
}
print("wrote", paths.shown(results.write_metrics(run, metrics)))

# %% [markdown]
# ## Try this
#
# Each change goes in the parameters cell (the first code cell); then Run > Restart Kernel and Run All Cells.
# From a shell, papermill takes the same change as `-p NAME VALUE` (in brackets).
#
# - `mixture = "smm"` or `mixture = "lmm"` (`-p mixture smm`, `-p mixture lmm`): Student-t components tolerate
#   outliers; Laplace ones are peakier. Which fits best by BIC? Which gives the highest AUROC? (Table V asks
#   whether it matters for accuracy.)
# - In the table by tier: which tier does the mixture miss most, `hard` or `corrupt`? Why would a `hard` clip
#   that the visual branch has already learned look balanced?
# - Compare the prob and KL rows of the BIC table: the KL gap needs no label, is it as informative?
# - `seed = 1` (`-p seed 1`): is the bimodality stable across warm-up seeds?
# - Train the warm-up for fewer epochs (a smaller preset) and watch the second bump fade: the mixture needs a
#   model that has learned something, which is why the paper warms up first.
#
# **Check your answers:** `python -m mmgap.answers 03 --preset <preset>` computes each answer above from your runs
# (or names the run still missing and the command that makes it).
