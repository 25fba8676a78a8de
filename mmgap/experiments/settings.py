"""What the sweeps vary: the paper's table rows, the adaptive settings behind them, the control arm, labels.

Pure data and small functions (no training): `ablation_plan` maps the rows of Tables III-VI to
`AdaptiveSetting`s, `control_setting` gives a setting's control arm, `setting_preset` the preset a setting's
run trains with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mmgap import baselines
from mmgap.config import GAPS, MIXTURES, ConfigError, Preset, get_preset
from mmgap.data.manifest import TIERS
from mmgap.losses import AdaptiveLossConfig

TABLES = ("III", "IV", "V", "VI")


TABLE_TITLES = {
    "III": "Table III: ablation of the adaptive loss's terms (Eq. 11)",
    "IV": "Table IV: optimizer and its state between the stages",
    "V": "Table V: mixture family × modality gap",
    "VI": "Table VI: annealing decay rate ρ (λ_t = ρ^epoch)",
}


ABLATION_ROWS: tuple[tuple[str, str], ...] = (
    ("full", "Ours (full model)"),
    ("no_fusion", "w/o L_f (α = 0)"),
    ("no_gap_reg", "w/o |g|² (β = 0)"),
    ("no_align", "w/o |g − μ0|² (γ = 0)"),
    ("no_weights", "w/o w0, w1 (both set to 1)"),
    ("no_unimodal", "w/o L_a, L_v"),
)


OPTIMIZER_ROWS: tuple[tuple[str, bool, str], ...] = (
    ("sgd", True, "SGD (reset state)"),
    ("adam", True, "Adam (reset state)"),
    ("sgd", False, "SGD (same state)"),
    ("adam", False, "Adam (same state)"),
)


MIXTURE_LABELS = {"gmm": "GMM", "smm": "SMM", "lmm": "LMM"}


GAP_LABELS = {"prob": "Prob", "kl": "KL"}


RHOS: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)


TAUS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


ADAM_LR_RATIO = 0.5
"""Adam's learning rate in Table IV as a fraction of the preset's SGD rate (the paper does not state its rate).
Measured on the embedded data of generator v3 (Adam warm-up, 5 epochs, seed 0, fused / audio test accuracy):
3e-4 -> 42 / 12 %, 1e-3 -> 50 / 25 %, 3e-3 -> 81 / 67 %, 1e-2 -> 92 / 82 %: too small a rate leaves the audio
branch untrained. 0.5 gives 1e-2 at demo (SGD 0.02) and 1e-3, Adam's usual rate, at the paper's SGD 2e-3."""


def adam_lr_for(preset: Preset) -> float:
    """Adam's learning rate for a preset: ``ADAM_LR_RATIO`` × its SGD rate."""
    return ADAM_LR_RATIO * float(preset.train.lr)


OURS: dict[str, str] = {"ours_prob": "prob", "ours_kl": "kl"}
"""Table II's rows of the method itself: name -> gap (Eq. 5 or Eq. 6); as `mmgap.baselines.TWO_STAGE`."""


CONTROL = "control"
"""The adaptive stage's control arm: the warm-up loss (Eq. 10) continued from the same warm-up checkpoint for
the same epochs (`mmgap.method.run_control`). A row of Tables II and III, and the comparison of notebook 04."""


CONTROL_LABEL = "Control (warm-up loss continued)"


UNIMODAL = ("audio_only", "visual_only")
"""Reference rows of Table II (one encoder trained alone): not competitors, left out of the verdict."""


METRICS = ("acc", "f1", "acc_a", "acc_v")


TIER_METRICS = tuple(f"{m}_{t}" for m in ("acc_v", "acc") for t in TIERS)
"""Per ground-truth visual tier (embedded data): visual and fused test accuracy of the selected epoch."""


PURIFICATION_CONTROL = "Control: 100 % of the data (τ = 0)"
"""Table VII's control row: the same warm-up fine-tuned for the same epochs on every training clip."""


def method_label(name: str) -> str:
    """Table II's row label of a method name (`mmgap.baselines.LABELS`)."""
    return CONTROL_LABEL if name == CONTROL else baselines.LABELS.get(name, name)


@dataclass(frozen=True)
class AdaptiveSetting:
    """One distinct configuration of the adaptive stage (Eq. 11): what Tables III-VI vary."""

    ablation: str = "full"        # a Table III row of AdaptiveLossConfig.ablation
    optimizer: str = "sgd"        # "sgd" | "adam", used in both stages (Table IV)
    reset_optimizer: bool = True  # fresh optimizer at the adaptive stage (True) or the warm-up's state
    mixture: str = "gmm"          # "gmm" | "smm" | "lmm" (Table V)
    gap: str = "prob"             # "prob" (Eq. 5) | "kl" (Eq. 6)
    rho: float = 0.95             # λ_t = ρ^epoch (Table VI)
    posterior: str = "eq9"        # "eq9" (as printed) | "monotone" (w1 held beyond μ1), see mmgap.mixture

    @classmethod
    def from_preset(cls, preset: Preset) -> AdaptiveSetting:
        """The preset's own adaptive configuration (the 'full model' row of every table)."""
        t = preset.train
        return cls("full", t.optimizer, t.reset_optimizer, t.mixture, t.gap, float(t.rho), t.posterior)

    @property
    def is_control(self) -> bool:
        """Whether this is the control arm (Eq. 10 continued) rather than an adaptive setting."""
        return self.ablation == CONTROL

    @property
    def key(self) -> str:
        """A readable folder name, e.g. ``full-sgd-reset-gmm-prob-rho0.95`` (``control-sgd-reset-gmm-prob``)."""
        state = "reset" if self.reset_optimizer else "same"
        tail = "" if self.posterior == "eq9" else f"-{self.posterior}"
        if self.is_control:
            return f"{CONTROL}-{self.optimizer}-{state}-{self.mixture}-{self.gap}{tail}"
        return f"{self.ablation}-{self.optimizer}-{state}-{self.mixture}-{self.gap}-rho{self.rho:g}{tail}"

    def preset_overrides(self, adam_lr: float) -> dict[str, Any]:
        """Preset fields this setting sets (Adam also gets its own learning rate, see `adam_lr_for`)."""
        out: dict[str, Any] = dict(optimizer=self.optimizer, reset_optimizer=self.reset_optimizer,
                                   mixture=self.mixture, gap=self.gap, rho=self.rho, posterior=self.posterior)
        if self.optimizer == "adam":
            out["lr"] = adam_lr
        return out


POSTERIOR_ROWS = {"monotone": "Full model, monotone posterior (w1 held beyond μ1)",
                  "eq9": "Full model, Eq. 9 as printed"}


def control_setting(base: AdaptiveSetting) -> AdaptiveSetting:
    """The control arm for `base`: same optimizer handling, the warm-up loss instead of Eq. 11.

    The control trains without Eq. 11, so ρ is reset (as `setting_preset` resets α, β, γ and the refit
    cadence): every table, notebook and seed with the same optimizer handling shares one control run. The
    gap, mixture family and posterior stay: they say how the control's end state is *measured* (π1, μ1),
    so it is measured like the adaptive arm it is compared with.
    """
    return AdaptiveSetting(CONTROL, base.optimizer, base.reset_optimizer, base.mixture, base.gap,
                           posterior=base.posterior)


@dataclass(frozen=True)
class PlanRow:
    """One row of a paper table and the setting that produces it."""

    table: str
    row: str
    setting: AdaptiveSetting


def ordered_tables(tables: Sequence[str]) -> list[str]:
    """The tables asked for in the paper's order; ConfigError for an empty list or an unknown name."""
    if isinstance(tables, str) or not isinstance(tables, (list, tuple)) or not tables:
        raise ConfigError(f"tables={tables!r}: expected a non-empty list drawn from {list(TABLES)}")
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ConfigError(f"tables={tables!r}: unknown {unknown}; choose from {list(TABLES)} (Roman numerals)")
    return [t for t in TABLES if t in tables]


def ablation_plan(tables: Sequence[str], base: AdaptiveSetting) -> list[PlanRow]:
    """The rows of Tables III-VI asked for, each mapped to its adaptive setting (base = the full model)."""
    plan: list[PlanRow] = []
    for table in ordered_tables(tables):
        if table == "III":
            plan += [PlanRow(table, label, dataclasses.replace(base, ablation=name))
                     for name, label in ABLATION_ROWS]
            other = "monotone" if base.posterior == "eq9" else "eq9"
            plan.append(PlanRow(table, POSTERIOR_ROWS[other], dataclasses.replace(base, posterior=other)))
            plan.append(PlanRow(table, CONTROL_LABEL, control_setting(base)))
        elif table == "IV":
            plan += [PlanRow(table, label, dataclasses.replace(base, optimizer=opt, reset_optimizer=reset))
                     for opt, reset, label in OPTIMIZER_ROWS]
        elif table == "V":
            plan += [PlanRow(table, f"{MIXTURE_LABELS[fam]}({GAP_LABELS[gap]})",
                             dataclasses.replace(base, mixture=fam, gap=gap))
                     for fam in MIXTURES for gap in GAPS]
        elif table == "VI":
            plan += [PlanRow(table, f"{rho:.2f}", dataclasses.replace(base, rho=rho)) for rho in RHOS]
    return plan


def distinct_settings(plan: Iterable[PlanRow]) -> list[AdaptiveSetting]:
    """Each setting once, in order of first appearance (shared rows run once)."""
    seen: dict[AdaptiveSetting, None] = {}
    for row in plan:
        seen.setdefault(row.setting, None)
    return list(seen)


CONTROL_RESET = ("alpha", "beta", "gamma", "refit_every", "gap_source")
"""Eq. 11's settings a control run never uses: reset to the preset's defaults, so one control serves all."""


def setting_preset(preset: Preset, setting: AdaptiveSetting, adam_lr: float | None = None) -> Preset:
    """The preset a setting's run trains with (`preset` with the setting's fields; Adam at `adam_lr`)."""
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    run_preset = preset.with_overrides(**setting.preset_overrides(adam_lr))
    if setting.is_control:
        defaults = get_preset(preset.name).train
        run_preset = run_preset.with_overrides(**{f: getattr(defaults, f) for f in CONTROL_RESET})
    return run_preset


def setting_warmup_preset(preset: Preset, setting: AdaptiveSetting, adam_lr: float | None = None) -> Preset:
    """The preset of the warm-up a setting starts from (Adam rows: an Adam warm-up at Adam's rate)."""
    adam_lr = adam_lr_for(preset) if adam_lr is None else adam_lr
    if setting.optimizer == "adam":
        return preset.with_overrides(optimizer="adam", lr=adam_lr)
    return preset.with_overrides(optimizer=setting.optimizer)


def loss_config(run_preset: Preset, setting: AdaptiveSetting) -> Any:
    """Eq. 11's settings for an adaptive setting (its Table III row applied)."""
    return AdaptiveLossConfig.from_train_config(run_preset.train).ablation(setting.ablation)


def table_ii_epochs(preset: Preset) -> int:
    """Table II's budget for a single-stage method: warm-up + adaptive epochs, the two-stage method's total."""
    return preset.train.warmup_epochs + preset.train.adaptive_epochs
