"""OPM and OPM&OGM: on-the-fly prediction modulation (Wei et al., "On-the-fly modulation for balanced
multimodal learning", TPAMI 2024), alone and combined with OGM's gradient modulation (Table II, "OPM&OGM").

Follows GeWu-Lab/BML_TPAMI2024: code/models/Classifier.py (``calcu_q``, ``Modality_drop.execute_drop``,
``Classifier.forward``) and code/main.py (``train``). Per batch, from the undropped split logits of Eq. (2):
s_m = Σ_i softmax(l^m_i)[y_i], r_m = tanh(relu(s_m / s_other − 1)), and the drop probability
q_m = q_base·(1 + λ·r_m) when r_m > 0 (else 0), clipped to [0, 1]; only the leading modality can have r_m > 0.
With probability p_exe per batch, each sample's feature vector of modality m is zeroed with probability q_m
(Bernoulli per sample), and both modalities' features are rescaled by 1 / (1 − θ), θ = Σ_m d_m q_m / Σ_m d_m.
The fused logits of the dropped features are trained with CE. Neither OPM nor OGM runs during the warm-up
(main.py: ``warm_up = 1 if epoch <= 5``). "opm_ogm" adds OGM-GE's coefficients and GE noise
(mmgap.baselines.ogm_ge; main.py ``train`` applies the same 1 − tanh(α·r) to 4-D conv gradients) computed
from the same undropped scores, after the warm-up and inside OGM's own window.

Defaults and their source: q_base 0.5, λ 0.5, p_exe 0.7 (scripts/train_opm.sh); α 0.8 and OGM's window
[0, 60] (scripts/train_ogm.sh); warm-up ``epoch <= 5`` and 100 epochs (main.py, config.py). As fractions of
this run: ``warmup=0.05`` (drop from epoch round(0.05·T) + 1 on: epoch 6 of 100, epoch 2 of 20) and
``ogm_window=(0.0, 0.6)`` (inclusive, [0, 12] at 20 epochs); see `OPMStrategy.schedule`.

The authors' θ gradient, a deviation from their per-step arithmetic that we keep: their
``custom_autograd.backward`` (Classifier.py) returns θ itself as θ's gradient, and their θ is built from
non-detached features (``calcu_q`` on the s_m of split logits whose W is detached), so whenever a drop
executes their encoders also descend θ²/2, a term OPM's description (drop, then rescale) does not contain.
Here θ carries no gradient (the 1/(1 − θ) rescaling is a constant, as their backward treats it for the
features). We read that return value as an accident of the hand-written backward (the slot of a gradient that
was meant to be dropped) and keep OPM's loss as described (CE on the dropped, rescaled features). Measured
size (demo preset, seeds 0 and 1, 20 epochs, each of the 495 executed drops): the θ²/2 term's gradient has
2.5 % of the CE gradient's norm on the audio encoder (median; 10-90 %: 0.8-8.4 %) and 1.4 % (0.6-3.4 %) on the
visual one; it points against audio's CE gradient (cosine −0.32) and along visual's (+0.60), slowing the
leading branch a little more. Trained with it (loss + θ²/2, θ through the features), test accuracy is
86.11 ± 1.96 against 86.94 ± 2.36 without, within the seed spread.

Deviations: (1) a sample whose features are all dropped would be removed from the batch by the authors'
``update_flag``; with two modalities only the leading one can be dropped, so this never happens and is not
coded. (2) 1e-5 guards the ratio s_m / s_other and 1 / (1 − θ) against division by zero (the authors' code
has no guard). (3) The per-batch p_exe draw uses a seeded CPU generator saved in checkpoints (theirs:
NumPy's global RNG), so runs resume bit-identically.
"""

from __future__ import annotations

from typing import Any

import torch

from mmgap.baselines._common import (
    REFERENCE_EPOCHS,
    DeviceRng,
    autocast,
    ce,
    check_fraction,
    check_window,
    device_generator,
    encoder,
    epochs_of,
    in_window,
    run_length,
    standard_parts,
    to_device,
    true_class_score,
)
from mmgap.baselines.ogm_ge import modulate_grads, ogm_coefficients
from mmgap.strategy import Batch, Strategy, TrainerView

EPS = 1e-5  # guards s_m / s_other and 1 / (1 − θ) against division by zero (deviation 2)


def opm_drop_probs(logit_a: torch.Tensor, logit_v: torch.Tensor, y: torch.Tensor, q_base: float,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q_a, q_v): q_m = clip(q_base·(1 + λ·r_m), 0, 1) if r_m > 0 else 0, r_m = tanh(relu(s_m/s_o − 1))."""
    s_a = true_class_score(logit_a.detach(), y)
    s_v = true_class_score(logit_v.detach(), y)
    qs = []
    for s_m, s_o in ((s_a, s_v), (s_v, s_a)):
        r = torch.tanh(torch.relu(s_m / (s_o + EPS) - 1.0))
        q = torch.where(r > 0, q_base * (1.0 + lam * r), torch.zeros_like(r)).clamp(0.0, 1.0)
        qs.append(q)
    return qs[0], qs[1]


def opm_theta(q_a: torch.Tensor, q_v: torch.Tensor, dim_a: int, dim_v: int) -> torch.Tensor:
    """θ = (d_a·q_a + d_v·q_v) / (d_a + d_v), the concatenated feature's expected drop rate."""
    return (dim_a * q_a + dim_v * q_v) / (dim_a + dim_v)


def opm_drop(feat_a: torch.Tensor, feat_v: torch.Tensor, q_a: torch.Tensor, q_v: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(feat_a', feat_v', θ): per-sample Bernoulli(1 − q_m) masks, both rescaled by 1 / (1 − θ)."""
    b = feat_a.shape[0]
    u = torch.rand((2, b, 1), generator=generator, device=feat_a.device)
    keep_a = (u[0] >= q_a).to(feat_a.dtype)
    keep_v = (u[1] >= q_v).to(feat_v.dtype)
    theta = opm_theta(q_a, q_v, feat_a.shape[1], feat_v.shape[1])
    scale = 1.0 / (1.0 - theta + EPS)
    return feat_a * keep_a * scale.to(feat_a.dtype), feat_v * keep_v * scale.to(feat_v.dtype), theta


class OPMStrategy(Strategy):
    """CE on fused logits of features where the leading modality is dropped per sample (OPM)."""

    name = "opm"
    reference_epochs = REFERENCE_EPOCHS

    def __init__(self, q_base: float = 0.5, lam: float = 0.5, p_exe: float = 0.7, warmup: float = 0.05) -> None:
        for field, value in (("q_base", q_base), ("p_exe", p_exe)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"OPM {field} must be in [0, 1], got {value!r}")
        if not lam >= 0:
            raise ValueError(f"OPM lam must be >= 0, got {lam!r}")
        self.q_base, self.lam, self.p_exe = float(q_base), float(lam), float(p_exe)
        self.warmup = check_fraction("OPM", "warmup", warmup)
        self._rng = DeviceRng()
        self._cpu_gen: torch.Generator | None = None
        self._cpu_state: torch.Tensor | None = None
        self._sched: dict[str, int] | None = None

    def schedule(self, epochs: int) -> dict[str, int]:
        """Feature dropping runs from ``modulation_starts`` to the end of a run of ``epochs`` (after the warm-up)."""
        return {"modulation_starts": epochs_of(self.warmup, epochs) + 1}

    def setup(self, trainer: TrainerView) -> None:
        """Generators (device: masks; CPU: the per-batch p_exe draw, no host sync) and the schedule."""
        self._rng.setup(trainer)
        if self._cpu_gen is None:
            self._cpu_gen = device_generator(trainer, "cpu")
        if self._cpu_state is not None:
            self._cpu_gen.set_state(self._cpu_state)
            self._cpu_state = None
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def dropping(self, epoch: int) -> bool:
        """Whether OPM may drop features in this (0-based) epoch (after the warm-up)."""
        assert self._sched is not None, "call setup(trainer) first"
        return epoch >= self._sched["modulation_starts"]

    def _forward(self, trainer: TrainerView, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        """Encode, score the undropped split logits, drop and fuse; returns the tensors the loss needs."""
        model = trainer.model
        batch = to_device(batch, trainer.device)
        y = batch["label"]
        with autocast(trainer):
            feat_a, feat_v = model.encode(batch["audio"], batch["frames"])
            fused, logit_a, logit_v = model.head(feat_a, feat_v)
            q_a, q_v = opm_drop_probs(logit_a, logit_v, y, self.q_base, self.lam)
            assert self._cpu_gen is not None, "call setup(trainer) first"
            execute = bool(torch.rand((), generator=self._cpu_gen) < self.p_exe)
            if execute and self.dropping(epoch):
                da, dv, theta = opm_drop(feat_a, feat_v, q_a, q_v, self._rng.gen)
                fused = model.head(da, dv)[0]
            else:
                theta = torch.zeros((), device=feat_a.device)
        return {"fused": fused, "logit_a": logit_a, "logit_v": logit_v, "y": y, "q_a": q_a, "q_v": q_v,
                "theta": theta}

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE on the fused logits of the (possibly) dropped features."""
        o = self._forward(trainer, batch, epoch)
        parts = standard_parts(o["fused"], o["logit_a"], o["logit_v"], o["y"])
        parts.update(q_a=o["q_a"], q_v=o["q_v"], theta=o["theta"])
        return ce(o["fused"], o["y"]), parts

    def state_dict(self) -> dict[str, Any]:
        """Both generators' states (the schedule is recomputed from the run's budget at setup)."""
        return {"rng": self._rng.state(), "cpu_rng": None if self._cpu_gen is None else self._cpu_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self._rng.load(state.get("rng"))
        cpu = state.get("cpu_rng")
        if cpu is not None:
            if self._cpu_gen is None:
                self._cpu_state = cpu
            else:
                self._cpu_gen.set_state(cpu)


class OPMOGMStrategy(OPMStrategy):
    """OPM's feature dropping plus OGM-GE's encoder-gradient coefficients from the same scores (OPM&OGM)."""

    name = "opm_ogm"

    def __init__(self, alpha: float = 0.8, ge: bool = True, ogm_window: tuple[float, float] = (0.0, 0.6),
                 **opm_kwargs: Any) -> None:
        super().__init__(**opm_kwargs)
        if not alpha >= 0:
            raise ValueError(f"OPM&OGM alpha must be >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.ge = bool(ge)
        self.ogm_window = check_window("OPM&OGM", "ogm_window", ogm_window)
        self._coeffs: tuple[torch.Tensor, torch.Tensor] | None = None

    def schedule(self, epochs: int) -> dict[str, int]:
        """OPM's start, and OGM's window [ogm_starts, ogm_ends] (never inside the warm-up)."""
        sched = super().schedule(epochs)
        sched["ogm_starts"] = max(sched["modulation_starts"], epochs_of(self.ogm_window[0], epochs))
        sched["ogm_ends"] = min(epochs_of(self.ogm_window[1], epochs), epochs - 1)
        return sched

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """OPM's loss; the OGM coefficients of the undropped split logits are kept for after_backward."""
        o = self._forward(trainer, batch, epoch)
        k_a, k_v, _ = ogm_coefficients(o["logit_a"], o["logit_v"], o["y"], self.alpha)
        self._coeffs = (k_a, k_v)
        parts = standard_parts(o["fused"], o["logit_a"], o["logit_v"], o["y"])
        parts.update(q_a=o["q_a"], q_v=o["q_v"], theta=o["theta"], coeff_a=k_a, coeff_v=k_v)
        return ce(o["fused"], o["y"]), parts

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """OGM-GE's conv-gradient modulation of both encoders inside OGM's window [ogm_starts, ogm_ends]."""
        assert self._sched is not None, "call setup(trainer) first"
        if self._coeffs is None or not in_window(epoch, self._sched["ogm_starts"], self._sched["ogm_ends"]):
            return
        k_a, k_v = self._coeffs
        modulate_grads(encoder(trainer.model, "audio"), k_a, self.ge, self._rng.gen)
        modulate_grads(encoder(trainer.model, "visual"), k_v, self.ge, self._rng.gen)
