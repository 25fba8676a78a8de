"""Protocol cards: a run's whole protocol as one typed record, each value marked with where it comes from.

A value is *given by the paper* (its section or table), *by a method's authors* (their repository and
file), *chosen here* (with the reason), or read off the *software* that ran (the package versions that
change numbers, the CPU kind and thread count). `protocol_card` builds the card of one (preset, dataset,
method); every notebook prints it (`ProtocolCard.table`) and stores it in its ``metrics.json``
(`ProtocolCard.to_dict`); `cards_markdown` lays several side by side (docs/protocol-cards.md).

The per-method training protocol of the baselines at the `paper` preset (their authors' learning-rate
decay, their per-dataset hyperparameters) lives here too: `method_preset` and `method_kwargs` apply it and
`mmgap.experiments` calls them, so a card and the run it describes cannot disagree.
"""

from __future__ import annotations

import dataclasses
import inspect
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mmgap import baselines
from mmgap.config import PAPER_DATASET_DEFAULTS, Preset
from mmgap.data.protocols import PROTOCOLS, Protocol, embedded_protocol
from mmgap.paths import REPO_ROOT
from mmgap.results import to_markdown

KINDS = ("paper", "authors", "chosen", "software")
"""Where a value comes from: the paper, a method's authors, this project's choice, or the installed software."""

KIND_LABELS = {"paper": "the paper", "authors": "the authors", "chosen": "chosen here", "software": "software"}

NUMERIC_PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scipy", "scikit-learn", "av", "soundfile")
"""Packages whose version can change this project's numbers (kernels, RNG streams, codecs, EM, features)."""

OURS_METHODS = ("ours_prob", "ours_kl", "control")
"""The paper's method (two gaps) and its control arm: two-stage runs, not baselines."""

PAPER = "Liu et al., Quantifying Multimodal Imbalance"

# -------------------------------------------------------------------- the baselines' authors, per method

METHOD_SOURCES: dict[str, str] = {
    "audio_only": "GeWu-Lab/OGM-GE_CVPR2022, models/basic_model.py (AClassifier); BalanceBenchmark unimodal_trainer",
    "visual_only": "GeWu-Lab/OGM-GE_CVPR2022, models/basic_model.py (VClassifier); BalanceBenchmark unimodal_trainer",
    "concat": "GeWu-Lab/OGM-GE_CVPR2022, main.py (--modulation Normal)",
    "g_blending": "GeWu-Lab/BalanceBenchmark, balancemm/trainer/GBlending_trainer.py (authors' code not public)",
    "ogm_ge": "GeWu-Lab/OGM-GE_CVPR2022, main.py (train_epoch)",
    "pmr": "fanyunfeng-bit/Modal-Imbalance-PMR, main_Prototype_grad.py",
    "mmcosine": "GeWu-Lab/MMCosine_ICASSP23, main_CD.py",
    "agm": "GeWu-Lab/BalanceBenchmark, balancemm/trainer/AGM_trainer.py (lihongcs/AGM not indexed)",
    "mla": "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, main.py",
    "dr": "GeWu-Lab/Diagnosing_Relearning_ECCV2024, code/ours.py",
    "opm": "GeWu-Lab/BML_TPAMI2024, code/main.py and code/models/Classifier.py",
    "opm_ogm": "GeWu-Lab/BML_TPAMI2024, code/main.py and code/models/Classifier.py",
    "mmpareto": "GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py (train_epoch) and code/min_norm_solvers.py",
    "inforeg": "GeWu-Lab/InfoReg_CVPR2025, main.py (train_epoch)",
    "smv": "GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation, code/sample_level.py (does not start as published: "
           "implemented from the paper)",
    "remix": "MatthewMaxy/Remix_ICML2025, train.py (remix, special_train_epoch)",
    "bss": "njustkmg/IJCAI25-BSS, CREMA-D/train-CL.py (model_evaluate, the curriculum loop)",
}
"""Where each baseline's formulation and defaults come from (each module's docstring has the detail)."""

AUTHORS_LR: dict[str, tuple[int, int, float, str] | None] = {
    # method: (step, of_epochs, factor, source) of the StepLR the authors' script runs, or None (no decay)
    "audio_only": (70, 100, 0.1, "GeWu-Lab/OGM-GE_CVPR2022, main.py: StepLR(70, 0.1) over 100 epochs"),
    "visual_only": (70, 100, 0.1, "GeWu-Lab/OGM-GE_CVPR2022, main.py: StepLR(70, 0.1) over 100 epochs"),
    "concat": (70, 100, 0.1, "GeWu-Lab/OGM-GE_CVPR2022, main.py: StepLR(70, 0.1) over 100 epochs"),
    "ogm_ge": (70, 100, 0.1, "GeWu-Lab/OGM-GE_CVPR2022, main.py: StepLR(70, 0.1) over 100 epochs"),
    "pmr": (70, 100, 0.1, "fanyunfeng-bit/Modal-Imbalance-PMR, main_Prototype_grad.py: StepLR(70, 0.1) (SGD), "
                         "100-epoch runs of bash.sh"),
    "mmcosine": (100, 200, 0.1, "GeWu-Lab/MMCosine_ICASSP23, main_CD.py: StepLR(100, 0.1) over 200 epochs"),
    "mla": (70, 100, 0.1, "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation, main.py: "
                         "StepLR(70, 0.1) over 100 epochs"),
    "opm": (40, 100, 0.1, "GeWu-Lab/BML_TPAMI2024, code/config.py: StepLR(40, 0.1) over 100 epochs (with AdamW "
                         "5e-5 there; SGD here, one optimiser for every method)"),
    "opm_ogm": (40, 100, 0.1, "GeWu-Lab/BML_TPAMI2024, code/config.py: StepLR(40, 0.1) over 100 epochs (with "
                             "AdamW 5e-5 there; SGD here, one optimiser for every method)"),
    "g_blending": (10, 30, 0.1, "GeWu-Lab/BalanceBenchmark, configs/global_config.yaml: StepLR(10, 0.1) over 30 "
                               "epochs (the original code is not public)"),
    "agm": (10, 30, 0.1, "GeWu-Lab/BalanceBenchmark, configs/global_config.yaml: StepLR(10, 0.1) over 30 epochs "
                        "(lihongcs/AGM is not indexed)"),
    "dr": None,  # code/ours.py parses --lr_decay_step but builds no scheduler: a constant rate
    "mmpareto": None,  # code/MMPareto.py builds StepLR(30, 0.1) but never steps it: a constant rate
    "inforeg": (30, 50, 0.1, "GeWu-Lab/InfoReg_CVPR2025, main.py: StepLR(30, 0.1), stepped every epoch, over "
                             "50 epochs"),
    "smv": (30, 60, 0.1, "GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation, code/sample_level.py: StepLR(30, 0.1) "
                        "over 60 epochs (with Adam 5e-5 there; SGD here, one optimiser for every method)"),
    "remix": (30, 60, 0.1, "MatthewMaxy/Remix_ICML2025, train.py: StepLR(30, 0.1) over 60 epochs (with Adam 5e-5 "
                          "there; SGD here, one optimiser for every method)"),
    "bss": (70, 120, 0.1, "njustkmg/IJCAI25-BSS, CREMA-D/train-CL.py: StepLR(70, 0.1) over 120 epochs"),
}
"""Each baseline's learning-rate decay as its authors' training script runs it. At `paper` the step is the same
fraction of our run as of theirs (70 of 100 epochs -> 70 % of ours), as the methods' windows are."""

AUTHORS_LR_NONE = "GeWu-Lab/Diagnosing_Relearning_ECCV2024, code/ours.py: no scheduler is built (a constant rate)"

AUTHORS_LR_CONSTANT: dict[str, str] = {
    "dr": AUTHORS_LR_NONE,
    "mmpareto": "GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py: StepLR(30, 0.1) is built and passed to train_epoch "
                "but scheduler.step() is never called (a constant rate)",
}
"""Where each constant-rate entry of AUTHORS_LR (``None``) comes from."""

AUTHORS_DATASET_PARAMS: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "ogm_ge": {
        "crema_d": ({"alpha": 0.8}, "GeWu-Lab/OGM-GE_CVPR2022, README (Tips: alpha 0.8 for CREMA-D)"),
        "kinetics_sounds": ({"alpha": 0.8, "window": (0.06, 0.6)},
                            "GeWu-Lab/BML_TPAMI2024, code/scripts/train_ogm.sh: alpha 0.8, modulation to epoch 60 "
                            "of 100 after a 6-epoch warm-up (main.py)"),
    },
    "pmr": {
        "crema_d": ({"alpha": 2.0, "momentum": 0.0},
                    "fanyunfeng-bit/Modal-Imbalance-PMR, bash.sh: concat runs on CREMA-D, alpha 2.0, mu 0.0 "
                    "(their runs there use Adam/AdaGrad)"),
        "ave": ({"alpha": 2.0, "momentum": 0.0},
                "fanyunfeng-bit/Modal-Imbalance-PMR, bash.sh: concat SGD run on AVE, alpha 2.0, mu 0.0"),
    },
    "mmcosine": {"crema_d": ({"scale": 10.0}, "GeWu-Lab/MMCosine_ICASSP23, main_CD.py: --scaling 10")},
    "dr": {"crema_d": ({"lam": 3.0, "reinit_every": 20 / 90, "reinit_num": 3},
                       "GeWu-Lab/Diagnosing_Relearning_ECCV2024, script/ours.sh: reinit every 20 of 90 epochs, "
                       "3 times, lambda 3")},
    "opm": {"kinetics_sounds": ({"q_base": 0.5, "lam": 0.5, "p_exe": 0.7},
                                "GeWu-Lab/BML_TPAMI2024, code/scripts/train_opm.sh")},
}
"""Method hyperparameters the authors publish per dataset: method -> dataset -> (kwargs, source). Datasets absent
here take the module's defaults (each baseline's docstring names their source)."""

# ------------------------------------------------------------------------------ the data protocols' source

DATA_SOURCES: dict[str, tuple[str, str]] = {
    "crema_d": ("authors", "GeWu-Lab/OGM-GE_CVPR2022, dataset/CramedDataset.py (STFT, 1 fps frames)"),
    "ave": ("authors", "Kaldi fbank of GeWu-Lab/BML_TPAMI2024 and BalanceBenchmark; event window of the AVE "
                       "annotations"),
    "kinetics_sounds": ("authors", "GeWu-Lab/BML_TPAMI2024, Kaldi fbank 128 x 1,024 and 3 frames at 1 fps"),
    "generic": ("chosen", "CREMA-D's STFT front end at 16 kHz over 4 s: a neutral default for users' data"),
    "embedded": ("chosen", "generated locally: DTMF tones and digits (data/README.md)"),
}


@dataclass(frozen=True)
class Entry:
    """One value of a protocol and where it comes from (`kind` in KINDS; `source` a section, file or reason)."""

    value: Any
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Entry kind {self.kind!r} is not one of {KINDS}")


@dataclass(frozen=True)
class ProtocolCard:
    """The whole protocol of one run: (preset, dataset, method) and an ordered list of named entries."""

    preset: str
    dataset: str
    method: str
    entries: tuple[tuple[str, Entry], ...]

    def __getitem__(self, name: str) -> Entry:
        for key, entry in self.entries:
            if key == name:
                return entry
        raise KeyError(f"the protocol card has no entry {name!r}; it has {[k for k, _ in self.entries]}")

    def names(self) -> list[str]:
        """Entry names in the card's order."""
        return [k for k, _ in self.entries]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (stored in metrics.json); `from_dict` restores it."""
        return {"preset": self.preset, "dataset": self.dataset, "method": self.method,
                "entries": {k: dataclasses.asdict(e) for k, e in self.entries}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProtocolCard:
        """The card that `to_dict` wrote."""
        return cls(preset=d["preset"], dataset=d["dataset"], method=d["method"],
                   entries=tuple((k, Entry(**e)) for k, e in d["entries"].items()))

    def table(self) -> pd.DataFrame:
        """One row per entry: value, who gives it, and the source (for notebooks and Markdown)."""
        rows = [{"field": k, "value": _show(e.value), "given by": KIND_LABELS[e.kind], "source": e.source}
                for k, e in self.entries]
        return pd.DataFrame(rows).set_index("field")

    def markdown(self) -> str:
        """The card as a Markdown table, headed by its preset, dataset and method."""
        head = f"**Protocol card**: preset `{self.preset}`, dataset `{self.dataset}`, method `{self.method}`\n\n"
        return head + to_markdown(self.table().reset_index())


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------- per-method protocol of the baselines


def method_preset(preset: Preset, method: str, epochs: int | None = None) -> Preset:
    """The preset a baseline trains with for `epochs` (default warm-up + adaptive): at `paper`, its authors'
    learning-rate decay, the step scaled to the run as a fraction of theirs; elsewhere the preset unchanged."""
    if preset.name != "paper" or method not in AUTHORS_LR:
        return preset
    plan = AUTHORS_LR[method]
    if plan is None:
        return preset.with_overrides(lr_schedule="none")
    step, of_epochs, decay, _ = plan
    n = epochs if epochs is not None else preset.train.warmup_epochs + preset.train.adaptive_epochs
    return preset.with_overrides(lr_schedule="step", lr_step=max(1, round(step * n / of_epochs)), lr_decay=decay)


def method_kwargs(method: str, dataset: str, preset: Preset) -> dict[str, Any]:
    """A baseline's hyperparameters for `dataset` that its authors publish (at `paper` only; else none)."""
    if preset.name != "paper":
        return {}
    return dict(AUTHORS_DATASET_PARAMS.get(method, {}).get(dataset, ({}, ""))[0])


def _method_defaults(method: str) -> dict[str, Any]:
    """A baseline's constructor defaults (the values its module documents), read from its signature."""
    params = inspect.signature(type(baselines.get(method)).__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}


# --------------------------------------------------------------------------------------------- the card


def software_versions() -> dict[str, str]:
    """Python, the numerically relevant packages, the CPU kind and torch's thread count, as installed now."""
    out = {"python": platform.python_version()}
    for name in NUMERIC_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["machine"] = f"{platform.machine()}, {_cpu_model()}"
    out["torch threads"] = str(torch.get_num_threads())
    out["package set"] = lock_status(out)
    return out


def lock_path() -> Path:
    """The lock (constraints file) `make setup` installs for this Python: requirements/constraints-py3XX.txt."""
    major, minor = sys.version_info[:2]
    return REPO_ROOT / "requirements" / f"constraints-py{major}{minor}.txt"


def lock_status(installed: dict[str, str]) -> str:
    """Whether the numerically relevant packages are the locked ones (the set the published numbers come from)."""
    path = lock_path()
    if not path.is_file():
        return f"unpinned: no {path.name} for this Python"
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.strip().lower()] = version.strip()
    off = [f"{n} {installed[n]} (lock {pins[n]})" for n in NUMERIC_PACKAGES
           if n in pins and installed.get(n, "").split("+")[0] != pins[n].split("+")[0]]
    return f"pinned ({path.name})" if not off else "differs from the lock: " + ", ".join(off)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _data_protocol(dataset: str, preset: Preset) -> Protocol:
    if dataset == "embedded":
        return embedded_protocol(preset.embedded, val_frac=preset.train.val_frac)
    if dataset not in PROTOCOLS:
        raise ValueError(f"no data protocol for dataset {dataset!r}; known: embedded, {', '.join(PROTOCOLS)}")
    return PROTOCOLS[dataset]


def _audio_front_end(p: Protocol) -> str:
    a = p.audio
    feats = {"stft": f"log |STFT| (n_fft {a.n_fft}, hop {a.hop_length})",
             "fbank": f"Kaldi fbank {a.n_mels} bins" + (f" x {a.target_frames} frames" if a.target_frames else ""),
             "logmel": f"log-mel {a.n_mels} bins (n_fft {a.n_fft}, hop {a.hop_length})"}[a.features]
    return f"{a.sample_rate} Hz, {a.duration_s:g} s {'tiled' if a.tile else 'padded/cut'}, {feats}"


def protocol_card(preset: Preset, dataset: str, method: str = "ours_prob", seeds: Iterable[int] | None = None,
                  device: str | None = None, epochs: int | None = None) -> ProtocolCard:
    """The protocol card of `method` trained under `preset` on `dataset` (Table II names; ours: ours_prob/kl)."""
    if method not in OURS_METHODS and method not in baselines.NAMES:
        raise ValueError(f"unknown method {method!r}; choose one of {OURS_METHODS + baselines.NAMES}")
    ours = method in OURS_METHODS
    run = method_preset(preset, method, epochs) if not ours else preset
    t, m = run.train, run.model
    paper, demo = preset.name == "paper", preset.name != "paper"
    budget = "this project's CPU budget (mmgap.config; calibrated in data/README.md)"
    e: list[tuple[str, Entry]] = []

    def add(name: str, value: Any, kind: str, source: str) -> None:
        e.append((name, Entry(value, kind, source)))

    # --- model and data
    add("backbone", f"ResNet-18 x2 from scratch, width {m.width}, concat head",
        "paper" if m.width == 64 else "chosen",
        "Section IV-B" if m.width == 64 else f"narrower than the paper's 64 for {budget}")
    proto = _data_protocol(dataset, preset)
    kind, src = DATA_SOURCES.get(dataset, ("chosen", "mmgap.data.protocols"))
    add("audio front end", _audio_front_end(proto), kind, src)
    add("frames", f"{m.num_frames} of {proto.visual.frames_per_clip} stored ({proto.visual.fps:g} fps), "
                  f"{m.image_size} px crops of {proto.visual.frame_size} px", kind, src)
    add("selection", f"best validation accuracy; validation carved from train ({t.val_frac:g}) unless the "
                     "dataset has one; test never used to select", "chosen",
        "most public code selects on the test split; we never do (shared/reference/field-notes.md)")
    # --- optimisation
    add("optimizer", t.optimizer, "paper", "Section IV-B (SGD, momentum 0.9); Adam only in Table IV")
    lr_kind = "paper" if paper and t.optimizer == "sgd" else "chosen"
    add("learning rate", t.lr, lr_kind,
        "Section IV-B: initial learning rate 2e-3" if lr_kind == "paper"
        else f"{budget}; Adam at 0.5 x the SGD rate (mmgap.experiments.settings.ADAM_LR_RATIO)")
    if not ours and paper and method in AUTHORS_LR:
        plan = AUTHORS_LR[method]
        add("lr schedule", "constant" if plan is None else f"x{t.lr_decay:g} every {t.lr_step} epochs", "authors",
            AUTHORS_LR_CONSTANT.get(method, AUTHORS_LR_NONE) if plan is None
            else plan[3] + " (the step as the same fraction of our run)")
    elif t.lr_schedule == "none":
        add("lr schedule", "constant", "chosen",
            "the demo's calibrated constant rate for every method (data/README.md)" if demo
            else "constant rate")
    else:
        add("lr schedule", f"x{t.lr_decay:g} every {t.lr_step} epochs", "chosen",
            "the paper gives an initial rate (Section IV-B) but no schedule; OGM-GE's StepLR(70, 0.1), the "
            "field's most common, counted over both stages")
    add("momentum", t.momentum, "paper", "Section IV-B")
    add("weight decay", t.weight_decay, "chosen", "the paper gives none; 1e-4 as OGM-GE and most of the field")
    add("batch size", t.batch_size, "chosen", "the paper gives none; 64 as OGM-GE and most of the field")
    seeds = tuple(seeds) if seeds is not None else preset.seeds
    add("seeds", list(seeds), "chosen", "mean +- std over seeds; the paper reports single numbers")
    # --- schedule of the stages
    if ours:
        add("warm-up epochs", t.warmup_epochs, "chosen",
            "the paper gives no epoch counts" if paper else budget)
        add("adaptive epochs", t.adaptive_epochs, "chosen", "the paper gives no epoch counts" if paper else budget)
        add("optimizer reset between stages", t.reset_optimizer, "paper", "Table IV (reset state is best)")
    else:
        add("epochs", epochs if epochs is not None else t.warmup_epochs + t.adaptive_epochs, "chosen",
            "the same budget as ours (warm-up + adaptive epochs) for every method")
    # --- the method
    if ours and method != "control":
        rho_kind = "paper" if paper and dataset in PAPER_DATASET_DEFAULTS else "chosen"
        add("rho (lambda_t = rho^epoch)", t.rho, rho_kind,
            f"Table VI, best for {dataset}" if rho_kind == "paper"
            else "Table VI's best on CREMA-D and AVE (0.95)")
        add("alpha, beta, gamma (Eq. 11)", [t.alpha, t.beta, t.gamma], "chosen",
            "the paper gives no values (notebook 04 explains these)")
        add("gap", t.gap, "paper", "Eq. 5 (prob) / Eq. 6 (kl)")
        add("mixture", t.mixture, "paper", "Eq. 8 (GMM); Student-t and Laplace in Table V")
        add("posterior", t.posterior, "paper" if t.posterior == "eq9" else "chosen",
            "Eq. 9" if t.posterior == "eq9" else "Eq. 9 held at its extremes (mmgap.mixture)")
        add("balanced component", "the mean nearest a raw gap of 0", "paper",
            "Section III-B: 'the primary peak concentrated around zero'")
        add("refit every", f"{t.refit_every} epoch(s), on an {t.gap_source}-mode pass" if t.gap_source == "eval"
            else f"{t.refit_every} epoch(s), on the training steps' gaps", "chosen",
            "the paper alternates fitting and training without a cadence; eval-mode pass: this code's reading")
    elif method == "control":
        add("loss", "Eq. 10 continued for the adaptive epochs", "chosen",
            "not in the paper: tells what Eq. 11 adds from training longer")
    else:
        params = {**_method_defaults(method), **method_kwargs(method, dataset, preset)}
        published = AUTHORS_DATASET_PARAMS.get(method, {}).get(dataset)
        src = published[1] if published and paper else METHOD_SOURCES.get(method, "its module's docstring")
        add("method", baselines.LABELS[method], "authors", METHOD_SOURCES.get(method, ""))
        if params:
            add("method hyperparameters", ", ".join(f"{k}={_show(v)}" for k, v in params.items()), "authors",
                src + "; fractions of windows scale with the run length (notebook 07 prints them)")
    # --- the software
    if device is not None:
        add("device", device, "software", "where this run trained")
    for name, version in software_versions().items():
        add(name, version, "software", "installed; `make setup` installs requirements/constraints-py311.txt")
    return ProtocolCard(preset=preset.name, dataset=dataset, method=method, entries=tuple(e))


def cards_markdown(cards: Iterable[ProtocolCard], software: bool = False) -> str:
    """Several cards side by side: one row per field, one column per card (software rows only if asked)."""
    cards = list(cards)
    names: list[str] = []
    for card in cards:
        for k, entry in card.entries:
            if k not in names and (software or entry.kind != "software"):
                names.append(k)
    cols = [f"{c.preset} / {c.dataset} / {c.method}" for c in cards]
    rows = []
    for k in names:
        row = {"field": k}
        for col, card in zip(cols, cards, strict=True):
            try:
                entry = card[k]
                row[col] = f"{_show(entry.value)} ({KIND_LABELS[entry.kind]})"
            except KeyError:
                row[col] = ""
        rows.append(row)
    return to_markdown(pd.DataFrame(rows))


# ------------------------------------------------------------------------------- docs/protocol-cards.md

CARD_DATASETS = ("crema_d", "ave", "kinetics_sounds", "generic")


def cards_document() -> str:
    """docs/protocol-cards.md: the method's cards side by side, then every baseline's protocol per dataset."""
    from mmgap.config import get_preset

    ours = [protocol_card(get_preset("paper", dataset=d), d, "ours_prob") for d in CARD_DATASETS]
    ours += [protocol_card(get_preset(p), "embedded", "ours_prob") for p in ("demo", "smoke")]
    rows = []
    for method in baselines.NAMES:
        row = {"method": baselines.LABELS[method]}
        for d in CARD_DATASETS:
            card = protocol_card(get_preset("paper", dataset=d), d, method)
            hyper = card["method hyperparameters"].value if "method hyperparameters" in card.names() else "-"
            row[d] = f"lr {card['lr schedule'].value}; {hyper}"
        rows.append(row)
    return (
        "# Protocol cards\n\n"
        "Generated by `python -m mmgap.cards` from `mmgap/cards.py` (a test checks this file is current). Every\n"
        "notebook prints the card of its own run and stores it in its `metrics.json` under `protocol`, with the\n"
        "package versions and the CPU it ran on. Each value says who gives it: *the paper* (section or table),\n"
        "*the authors* of a method (repository and file), or *chosen here* (and why).\n\n"
        "## The paper's method (Ours, prob gap): `paper` per dataset, `demo` and `smoke`\n\n"
        + cards_markdown(ours)
        + "\n## The baselines at `paper`: learning-rate schedule and hyperparameters per dataset\n\n"
        "Every method trains with the same optimiser, rate, batch and epoch budget as ours (the rows above);\n"
        "what differs is the learning-rate decay their authors' scripts run (the step as the same fraction of\n"
        "our run as of theirs) and the hyperparameters they publish per dataset (others: the module's defaults,\n"
        "whose source each module's docstring names). Sources: `python -c \"from mmgap.cards import *; "
        "print(protocol_card(get_preset('paper'), 'crema_d', 'ogm_ge').markdown())\"`.\n\n"
        + to_markdown(pd.DataFrame(rows))
    )


if __name__ == "__main__":
    import sys

    from mmgap.paths import REPO_ROOT

    target = REPO_ROOT / "docs" / "protocol-cards.md" if len(sys.argv) < 2 else sys.argv[1]
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(cards_document())
    print("wrote", target)
