# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · From raw clips to a feature cache
#
# **The question of this notebook:** what exactly does the model see? Before we can talk about modality
# imbalance we need to know what an *audio* sample and a *visual* sample are, how they were decoded, and
# how the dataset is split. Everything later in the course (warm-up, modality gaps, adaptive training)
# reads the feature cache built here.
#
# The data flow:
#
# ```
# raw clips on disk ──► manifest ──► decode + features ──► feature cache
#  (video with an       (one row a     (PyAV for video and   (uint8 frames, float16 audio features,
#   audio track)         clip: id,      audio, torchaudio     labels, split, clip ids)
#                        label, split)  for spectrograms)
# ```
#
# Each training sample is a pair $x_i = (x_i^a, x_i^v)$ with a label $y_i \in \{1, \dots, M\}$
# (Section III-A of the paper): $x_i^a$ is a spectrogram-like map $[F, T]$, $x_i^v$ a few RGB frames
# $[S, H, W, 3]$. The default dataset is the **embedded** one: generated on this machine from a seed, as real
# MP4 files, ten classes (the digits). Its audio track plays the digit's telephone keypad tone pair (DTMF)
# in noise: easy and fast to learn, the *dominant* modality. Its video shows a handwritten digit scan, and
# every clip has a ground-truth **visual tier**:
#
# | tier | what the picture shows | can the visual branch learn it? |
# |---|---|---|
# | `clean` | a large, contrasted digit drifting over clutter | yes, quickly |
# | `hard` | a smaller, dark-on-light digit (new features to learn) | yes, but slowly: it is starved when audio already solves the clip |
# | `corrupt` | no digit, only clutter (the default; `EmbeddedDesign` can also draw a digit of a random class) | no: the picture carries no label |
#
# This makes the embedded data a small *model organism* of the paper's problem. The `hard` clips are the
# **optimisation imbalance** every method of the field addresses: a weak modality that could learn, but
# does not, because the dominant one already satisfies the loss. The `corrupt` clips are *missing
# information*: nothing can rebalance them (the paper's data purification, notebook 06, is about them).
# The tier (and `imbalanced = tier != clean`) is stored in the cache but never shown to training: notebooks
# 03-07 use it to grade how well the mixture finds these clips and to report accuracy per tier.

# %% tags=["parameters"]
dataset = "embedded"  # str: "embedded" | "crema_d" | "ave" | "kinetics_sounds" | "generic"
data_dir = None  # str | None: the raw dataset folder (None: data/<dataset>; the embedded one is generated there)
rebuild = False  # bool: decode every clip again instead of reusing the feature cache (True after editing files)
preset = "demo"  # str: "smoke" (seconds, for tests) | "demo" (minutes on a CPU) | "paper" (GPU, real datasets)
seed = 0  # int, non-negative: the run seed (the data itself is fixed: it does not change with the seed)
device = "auto"  # str: "auto" (CUDA when present) | "cpu" | "cuda" (unused here: preprocessing runs on the CPU)

# %% tags=["validation"]
# Validate the parameters first (papermill does no type checking): a bad value stops here with a clear message.
from mmgap import experiments

cfg, dev = experiments.check_params(globals(), notebook="01_preprocessing")  # ConfigError names a bad value
print(f"dataset={dataset}, preset={cfg.name}, seed={seed}")

# %% [markdown]
# **The protocol card** of the course's method on this data (01 builds its audio front end and frames): every value, and
# who gives it (the paper, a method's authors, or this project's choice, with the reason), with the software that ran
# it. `metrics.json` stores it; `docs/protocol-cards.md` sets the cards of every preset and dataset side by side.

# %%
from IPython.display import display

card = experiments.protocol_card(cfg, dataset, "ours_prob", seeds=[seed], device=str(dev))
display(card.table())

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

from mmgap import paths, plots, results
from mmgap.data import embedded, prepare
from mmgap.data.decode import read_audio, read_frames
from mmgap.data.prepare import build_dataset_manifest, embedded_root

t_start = time.perf_counter()
run = paths.run_dir(cfg.name, "01_preprocessing", dataset)
print("results go to", paths.shown(run))

# %% [markdown]
# ## 1. Raw clips → manifest
#
# A **manifest** is a table with one row per clip: its id, the file(s), the label and the split. Every
# dataset has its own layout on disk (see `data/README.md`), and each gets a small module that turns that
# layout into the same manifest. For the embedded dataset the clips are generated first (skipped when an
# identical dataset already exists on disk).

# %%
t0 = time.perf_counter()
if dataset == "embedded":
    root = embedded.generate_embedded(embedded_root(data_dir, cfg, 0), cfg.embedded, seed=0)
    manifest = embedded.build_manifest(root)
else:
    root = paths.resolve(data_dir) if data_dir is not None else paths.resolve(f"data/{dataset}")
    manifest = build_dataset_manifest(dataset, root)
t_manifest = time.perf_counter() - t0
print(manifest.summary())
print(f"raw data in {paths.shown(root)} ({t_manifest:.1f} s)")
manifest_df = pd.DataFrame([vars(r) for r in manifest.rows])
for column in ("video", "audio"):  # file paths as the repo names them, not this machine's folders
    manifest_df[column] = manifest_df[column].map(lambda p: paths.shown(p) if p else p)
display(manifest_df.head(8))

# %% [markdown]
# ## 2. Manifest → feature cache
#
# `mmgap.data.prepare` decodes every clip once, in parallel worker processes: the video track with PyAV
# (frames sampled at a fixed rate, resized and centre-cropped), the audio track with PyAV (or soundfile for
# WAV files), then a spectrogram with torchaudio. The result is a handful of large arrays that training
# memory-maps. The cache folder's name holds a hash of the protocol and the clip list: change a parameter
# and a new cache is built; run this again and the existing one is reused in a fraction of a second.
# Clips that cannot be decoded are skipped and listed with the reason in `exclusions.csv`.

# %%
t0 = time.perf_counter()
cache = prepare(dataset, data_dir, cfg, seed, rebuild=rebuild)
t_cache = time.perf_counter() - t0
print(f"cache: {paths.shown(cache.path)} ({t_cache:.1f} s)")
shapes = pd.DataFrame(
    [
        ("audio", str(cache.audio.shape), str(cache.audio.dtype), cache.audio.nbytes / 2**20),
        ("frames", str(cache.frames.shape), str(cache.frames.dtype), cache.frames.nbytes / 2**20),
        ("labels", str(cache.labels.shape), str(cache.labels.dtype), cache.labels.nbytes / 2**20),
        ("split", str(cache.split.shape), str(cache.split.dtype), cache.split.nbytes / 2**20),
    ],
    columns=["array", "shape", "dtype", "MiB"],
)
display(shapes.round(2))
audio_p, visual_p = cache.protocol["audio"], cache.protocol["visual"]
print(f"audio protocol: {audio_p['features']} at {audio_p['sample_rate']} Hz, {audio_p['duration_s']} s, "
      f"hop {audio_p['hop_length']} samples")
print(f"visual protocol: {visual_p['frames_per_clip']} frames of {visual_p['frame_size']} px at {visual_p['fps']} fps")

# %% [markdown]
# ## 3. Look and listen
#
# One clip per class, as the model will see it: the stored frames (the visual encoder gets a random frame
# per segment in training and the centre frame in evaluation) and the audio feature map.
#
# **What to look for:** can *you* tell the class from the frames? From the spectrogram? For the embedded
# dataset, the keypad tone is a short burst in noise: where its two frequencies fall inside the feature map's
# range they show as two horizontal lines, and for some classes the map shows no clear tone at all (listen to
# the clip in notebook 03 instead; the network still learns every class from audio). The pictures are one
# clip per class, whatever its tier: a `hard` picture is a smaller dark digit on a light background, clearly
# visible to you, and a `corrupt` one shows no digit.

# %%
by_class = [int(np.flatnonzero(np.asarray(cache.labels) == c)[0]) for c in range(min(cache.num_classes, 10))]
fig, axes = plt.subplots(2, len(by_class), figsize=(1.6 * len(by_class), 3.6), squeeze=False)
for j, row in enumerate(by_class):
    axes[0, j].imshow(cache.frames[row][len(cache.frames[row]) // 2])
    axes[0, j].set_title(cache.class_names[cache.labels[row]], fontsize=9)
    axes[0, j].axis("off")
    axes[1, j].imshow(np.asarray(cache.audio[row], dtype=np.float32), origin="lower", aspect="auto", cmap="magma")
    axes[1, j].set_xticks([])
    axes[1, j].set_yticks([])
axes[1, 0].set_ylabel("frequency bin")
axes[1, 0].set_xlabel("time →")
fig.suptitle("One clip per class: centre frame (top) and audio features (bottom)")
fig.tight_layout()
plots.save_figure(fig, run / "classes.png")
plt.show()

# %% [markdown]
# Now one clip in detail, decoded again from the raw file (exactly what the cache builder did), with an
# audio player. For the embedded dataset we show one clip of each visual tier, all of the same class.

# %%
rows_by_id = {r.clip_id: r for r in manifest.rows}


def show_raw_clip(row: int, title: str):
    """Decode a cached clip's raw file again and show its frames, spectrogram and an audio player."""
    m = rows_by_id[cache.clip_ids[row]]
    media = m.video or m.audio
    frames = read_frames(m.video, visual_p["fps"], visual_p["frames_per_clip"], visual_p["frame_size"],
                         m.start, m.end) if m.video else cache.frames[row]
    wave = read_audio(m.audio or m.video, audio_p["sample_rate"], m.start, m.end)
    fig, player = plots.show_clip(frames, cache.audio[row], wave, audio_p["sample_rate"],
                                  hop_s=(0.01 if audio_p["features"] == "fbank"
                                         else audio_p["hop_length"] / audio_p["sample_rate"]),
                                  freq_label={"logmel": "mel bin", "fbank": "mel bin"}.get(audio_p["features"],
                                                                                           "frequency bin"),
                                  title=f"{title}: clip {cache.clip_ids[row]} ({media.split('/')[-1]}), "
                                        f"label {cache.class_names[cache.labels[row]]}")
    return fig, player


examples = {"a clip": by_class[0]}
if cache.visual_tier is not None:
    tiers = np.asarray(cache.visual_tier)
    same = np.asarray(cache.labels) == cache.labels[by_class[0]]
    examples = {tier: int(np.flatnonzero(same & (tiers == tier))[0]) for tier in ("clean", "hard", "corrupt")
                if np.any(same & (tiers == tier))}
for name, row in examples.items():
    fig, player = show_raw_clip(row, name)
    plots.save_figure(fig, run / f"clip_{name.split()[0]}.png")
    plt.show()
    display(player)

# %% [markdown]
# ## 4. Dataset statistics (Table I)
#
# The paper's Table I lists, per dataset, the number of clips in total, in training and in test, and the
# number of classes. We add the validation split, which this code base carves from the training data
# (seeded) for model selection: the test split is reported, never used to pick a checkpoint.

# %%
counts = cache.counts()
table_i = pd.DataFrame([{
    "Dataset": dataset,
    "Total": len(cache),
    "Train": counts["train"],
    "Val (from train)": counts["val"],
    "Test": counts["test"],
    "Classes": cache.num_classes,
    "Skipped clips": len(manifest.exclusions),
}])
if cache.visual_tier is not None:
    for tier in ("clean", "hard", "corrupt"):
        table_i[f"Visual tier {tier}"] = f"{np.mean(np.asarray(cache.visual_tier) == tier):.0%}"
display(table_i)
csv_path, md_path = results.save_table(table_i, run / "table_i")
print("saved", csv_path.name, md_path.name)

split_names = np.array(["train", "val", "test"])[np.asarray(cache.split)]
per_class = pd.DataFrame({"class": np.asarray(cache.class_names)[np.asarray(cache.labels)], "split": split_names})
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.countplot(data=per_class, x="class", hue="split", ax=ax, order=cache.class_names)
ax.set_xlabel("class")
ax.set_ylabel("clips (count)")
ax.set_title("Clips per class and split")
fig.tight_layout()
plots.save_figure(fig, run / "class_counts.png")
plt.show()

# %% [markdown]
# **What to look for:** the classes are balanced, and the split sizes are those the dataset's protocol sets;
# the cell prints the train : test ratio of this data (CREMA-D's random split is about 9:1; the embedded data
# has its own). If clips were skipped, `exclusions.csv` next to the cache says why.

# %%
n_split = cache.counts()
print(f"train : test = {n_split['train'] + n_split['val']} : {n_split['test']} "
      f"= {(n_split['train'] + n_split['val']) / max(n_split['test'], 1):.1f} : 1 (validation carved from train)")

# %%
metrics = {
    "protocol": card.to_dict(),
    "notebook": "01_preprocessing",
    "dataset": dataset,
    "preset": cfg.name,
    "seed": seed,
    "parameters": {"dataset": dataset, "data_dir": data_dir, "preset": preset, "seed": seed, "device": device},
    "cache_path": str(cache.path),
    "cache_key": cache.path.name if cache.path is not None else None,
    "num_clips": len(cache),
    "counts": counts,
    "num_classes": cache.num_classes,
    "skipped": len(manifest.exclusions),
    "audio_shape": list(cache.audio.shape[1:]),
    "frames_shape": list(cache.frames.shape[1:]),
    "imbalanced_frac": None if cache.imbalanced is None else float(np.mean(cache.imbalanced)),
    "visual_tiers": None if cache.visual_tier is None else
    {t: float(np.mean(np.asarray(cache.visual_tier) == t)) for t in ("clean", "hard", "corrupt")},
    "timings": {"manifest_seconds": t_manifest, "cache_seconds": t_cache,
                "total_seconds": time.perf_counter() - t_start},
}
print("wrote", paths.shown(results.write_metrics(run, metrics)))

# %% [markdown]
# ## Try this
#
# Each change goes in the parameters cell (the first code cell); then Run > Restart Kernel and Run All Cells.
# From a shell, papermill takes the same change as `-p NAME VALUE` (in brackets).
#
# - Run again: the dataset and the cache are found and reused (watch the timings).
# - `preset = "smoke"` (`-p preset smoke`) builds a tiny version in seconds; compare the shapes of the arrays.
# - Open `data/README.md`, download CREMA-D, and set `dataset = "crema_d"` and `data_dir = "data/crema_d"`
#   (`-p dataset crema_d -p data_dir data/crema_d`): the same cells show real faces, spectrograms of speech
#   and Table I's CREMA-D row.
# - Listen to a `hard` and a `corrupt` clip: the audio alone still tells the digit. That is what "the audio
#   modality dominates these samples" means; only for the `hard` one could the picture also tell it.
#
# **Check your answers:** `python -m mmgap.answers 01 --preset <preset>` computes each answer above from your runs
# (or names the run still missing and the command that makes it).
