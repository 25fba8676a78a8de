"""The baselines of Table II, each a `mmgap.strategy.Strategy`, selectable by name.

    from mmgap import baselines
    strategy = baselines.get("ogm_ge", alpha=0.8)   # then hand it to mmgap.trainer.Trainer

`NAMES` lists the baselines in Table II's order (the two unimodal references first, then the paper's rows);
`LABELS` maps them to the table's row labels; `schedules(epochs)` gives the effective epoch windows and periods
of the methods that have one (the authors' values as fractions of the run, resolved for ``epochs``). The paper's
own method is two-stage (warm-up, then the adaptive loss) and is run by `mmgap.method.run_two_stage`, not by a
single strategy: `TWO_STAGE` maps its Table II names to the gap kind (``"ours_prob"`` -> ``gap="prob"``,
``"ours_kl"`` -> ``gap="kl"``, the preset's ``train.gap``), and `get` refuses those names with a pointer there.

Methods needing a different head (MMCosine, MLA, the unimodal ones) replace ``trainer.model.head`` in ``setup``; the
trainer must call ``setup`` before it builds the optimizer (otherwise the new head is added to the optimizer as an
extra parameter group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mmgap.baselines.agm import AGMStrategy
from mmgap.baselines.bss import BSSStrategy
from mmgap.baselines.concat import ConcatStrategy
from mmgap.baselines.dr import DRStrategy
from mmgap.baselines.gblending import GBlendingStrategy
from mmgap.baselines.inforeg import InfoRegStrategy
from mmgap.baselines.mla import MLAStrategy
from mmgap.baselines.mmcosine import MMCosineStrategy
from mmgap.baselines.mmpareto import MMParetoStrategy
from mmgap.baselines.ogm_ge import OGMGEStrategy
from mmgap.baselines.opm import OPMOGMStrategy, OPMStrategy
from mmgap.baselines.pmr import PMRStrategy
from mmgap.baselines.remix import RemixStrategy
from mmgap.baselines.smv import SMVStrategy
from mmgap.baselines.unimodal import AudioOnlyStrategy, VisualOnlyStrategy
from mmgap.strategy import Strategy

_REGISTRY: dict[str, Callable[..., Strategy]] = {
    "audio_only": AudioOnlyStrategy,
    "visual_only": VisualOnlyStrategy,
    "concat": ConcatStrategy,
    "g_blending": GBlendingStrategy,
    "ogm_ge": OGMGEStrategy,
    "pmr": PMRStrategy,
    "mmcosine": MMCosineStrategy,
    "agm": AGMStrategy,
    "mla": MLAStrategy,
    "dr": DRStrategy,
    "opm": OPMStrategy,
    "opm_ogm": OPMOGMStrategy,
    "mmpareto": MMParetoStrategy,
    "inforeg": InfoRegStrategy,
    "smv": SMVStrategy,
    "remix": RemixStrategy,
    "bss": BSSStrategy,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)
"""Baseline names in Table II's order: the unimodal references, then the paper's rows (plus "opm", OPM alone)."""

TWO_STAGE: dict[str, str] = {"ours_prob": "prob", "ours_kl": "kl"}
"""The paper's method in Table II: name -> the gap it trains with (``preset.train.gap`` of
mmgap.method.run_two_stage)."""

LABELS: dict[str, str] = {
    "audio_only": "Audio only",
    "visual_only": "Visual only",
    "concat": "Baseline (Concat)",
    "g_blending": "G-Blending",
    "ogm_ge": "OGM-GE",
    "pmr": "PMR",
    "mmcosine": "MMCosine",
    "agm": "AGM",
    "mla": "MLA",
    "dr": "D&R",
    "opm": "OPM",
    "opm_ogm": "OPM&OGM",
    "mmpareto": "MMPareto",
    "inforeg": "InfoReg",
    "smv": "SMV",
    "remix": "Data Remixing",
    "bss": "BSS",
    "ours_prob": "Ours (Prob Gap)",
    "ours_kl": "Ours (KL Gap)",
}
"""Row labels of Table II."""

FAMILIES: dict[str, str] = {
    "audio_only": "reference", "visual_only": "reference", "concat": "reference",
    "g_blending": "modality-level", "ogm_ge": "modality-level", "pmr": "modality-level",
    "mmcosine": "modality-level", "agm": "modality-level", "mla": "modality-level", "dr": "modality-level",
    "opm": "modality-level", "opm_ogm": "modality-level", "mmpareto": "modality-level", "inforeg": "modality-level",
    "smv": "sample-level", "remix": "sample-level", "bss": "sample-level",
    "control": "control", "ours_prob": "ours", "ours_kl": "ours",
}
"""Table II's groups: the references (unimodal and plain concat), methods that balance per modality (one
coefficient per batch or per encoder), methods that balance per sample, the control arm (the warm-up loss
continued from the same warm-up) and the paper's method."""

FAMILY_ORDER: tuple[str, ...] = ("reference", "modality-level", "sample-level", "control", "ours")
"""The order of the groups in Table II and its figure."""


def get(name: str, **kwargs: Any) -> Strategy:
    """A fresh baseline strategy by name, with its documented defaults overridden by ``kwargs``."""
    key = name.strip().lower().replace("-", "_").replace("&", "_")
    key = {"ogm": "ogm_ge", "gblending": "g_blending", "d_r": "dr", "opm__ogm": "opm_ogm"}.get(key, key)
    if key in TWO_STAGE:
        raise ValueError(
            f"{name!r} is the paper's two-stage method, not a single strategy: run it with "
            f"mmgap.method.run_two_stage(cache, preset.with_overrides(gap={TWO_STAGE[key]!r}), run_dir)"
        )
    if key not in _REGISTRY:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(NAMES)} (or {', '.join(TWO_STAGE)})")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as err:
        raise TypeError(f"bad arguments for baseline {key!r}: {err}") from err


def schedules(epochs: int, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Effective epoch windows and periods of each named baseline (default: all) for a run of ``epochs``.

    Only methods with a schedule appear (G-Blending, OGM-GE, PMR, AGM, D&R, OPM, OPM&OGM, InfoReg, SMV, Remix,
    BSS), each with the values its `schedule` method resolves from its defaults. Epochs count from 0; windows
    are inclusive.
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    out: dict[str, dict[str, Any]] = {}
    for name in names if names is not None else NAMES:
        if name in TWO_STAGE:
            continue
        strategy = get(name)
        if hasattr(strategy, "schedule"):
            out[name] = strategy.schedule(epochs)
    return out


__all__ = ["NAMES", "TWO_STAGE", "LABELS", "FAMILIES", "FAMILY_ORDER", "get", "schedules"] + [
    cls.__name__ for cls in _REGISTRY.values()]
