"""OPM and OPM&OGM: on-the-fly prediction modulation (Wei et al., "On-the-fly modulation for balanced
multimodal learning", TPAMI 2024), alone and combined with OGM's gradient modulation (Table II, "OPM&OGM").

Per batch, from the undropped split logits of Eq. (2): s_m = Σ_i softmax(l^m_i)[y_i],
r_m = tanh(relu(s_m / s_other − 1)), and the drop probability q_m = q_base·(1 + λ·r_m) when r_m > 0 (else 0),
clipped to [0, 1]; only the leading modality can have r_m > 0. With probability p_exe per batch, each
sample's feature vector of modality m is zeroed with probability q_m (Bernoulli per sample), and both
modalities' features are rescaled by 1 / (1 − θ), θ = Σ_m d_m q_m / Σ_m d_m (the dimension-weighted drop
rate of the concatenated feature, as in the authors' code). The fused logits of the dropped features are
trained with CE. No dropping during the first `modulation_starts` epochs.

Defaults (the authors'): q_base 0.5, λ 0.5, p_exe 0.7, 5 warm-up epochs of a 100-epoch run (scaled to a
shorter run's budget). "opm_ogm" adds OGM-GE's gradient coefficients and GE noise (mmgap.baselines.ogm_ge,
α 0.8, the same epoch window [0, half of the run]) computed from the same scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from mmgap.baselines._common import (
    DeviceRng,
    autocast,
    ce,
    device_generator,
    encoder,
    in_window,
    scale_epochs,
    standard_parts,
    to_device,
    total_epochs,
    true_class_score,
)
from mmgap.baselines.ogm_ge import modulate_grads, ogm_coefficients
from mmgap.strategy import Batch, Strategy

if TYPE_CHECKING:  # pragma: no cover
    from mmgap.train import Trainer

EPS = 1e-5  # the authors' guard in s_m / s_other and 1 / (1 − θ)


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

    def __init__(self, q_base: float = 0.5, lam: float = 0.5, p_exe: float = 0.7,
                 modulation_starts: int | None = None, modulation_ends: int | None = None) -> None:
        for field, value in (("q_base", q_base), ("p_exe", p_exe)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"OPM {field} must be in [0, 1], got {value}")
        if lam < 0:
            raise ValueError(f"OPM lam must be >= 0, got {lam}")
        self.q_base, self.lam, self.p_exe = float(q_base), float(lam), float(p_exe)
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self._rng = DeviceRng()
        self._cpu_gen: torch.Generator | None = None
        self._cpu_state: torch.Tensor | None = None

    def setup(self, trainer: "Trainer") -> None:
        """Generators (device: masks; CPU: the per-batch p_exe draw, no host sync) and the warm-up length."""
        self._rng.setup(trainer)
        if self._cpu_gen is None:
            self._cpu_gen = device_generator(trainer, "cpu")
        if self._cpu_state is not None:
            self._cpu_gen.set_state(self._cpu_state)
            self._cpu_state = None
        if self.modulation_starts is None:
            self.modulation_starts = scale_epochs(5, total_epochs(trainer))

    def _forward(self, trainer: "Trainer", batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
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
            active = execute and in_window(epoch, int(self.modulation_starts or 0), self.modulation_ends)
            if active:
                da, dv, theta = opm_drop(feat_a, feat_v, q_a, q_v, self._rng.gen)
                fused = model.head(da, dv)[0]
            else:
                theta = torch.zeros((), device=feat_a.device)
        return {"fused": fused, "logit_a": logit_a, "logit_v": logit_v, "y": y, "q_a": q_a, "q_v": q_v,
                "theta": theta}

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE on the fused logits of the (possibly) dropped features."""
        o = self._forward(trainer, batch, epoch)
        parts = standard_parts(o["fused"], o["logit_a"], o["logit_v"], o["y"])
        parts.update(q_a=o["q_a"], q_v=o["q_v"], theta=o["theta"])
        return ce(o["fused"], o["y"]), parts

    def state_dict(self) -> dict[str, Any]:
        """Both generators' states and the resolved windows."""
        return {"rng": self._rng.state(), "cpu_rng": None if self._cpu_gen is None else self._cpu_gen.get_state(),
                "modulation_starts": self.modulation_starts, "ogm_ends": getattr(self, "ogm_ends", None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        self._rng.load(state.get("rng"))
        cpu = state.get("cpu_rng")
        if cpu is not None:
            if self._cpu_gen is None:
                self._cpu_state = cpu
            else:
                self._cpu_gen.set_state(cpu)
        if state.get("modulation_starts") is not None:
            self.modulation_starts = int(state["modulation_starts"])
        if state.get("ogm_ends") is not None and hasattr(self, "ogm_ends"):
            self.ogm_ends = int(state["ogm_ends"])


class OPMOGMStrategy(OPMStrategy):
    """OPM's feature dropping plus OGM-GE's encoder-gradient coefficients from the same scores (OPM&OGM)."""

    name = "opm_ogm"

    def __init__(self, alpha: float = 0.8, ge: bool = True, ogm_starts: int = 0, ogm_ends: int | None = None,
                 **opm_kwargs: Any) -> None:
        super().__init__(**opm_kwargs)
        self.alpha = float(alpha)
        self.ge = bool(ge)
        self.ogm_starts, self.ogm_ends = int(ogm_starts), ogm_ends
        self._coeffs: tuple[torch.Tensor, torch.Tensor] | None = None

    def setup(self, trainer: "Trainer") -> None:
        """OPM's setup; OGM's window ends at half of the run by default, as in OGM-GE."""
        super().setup(trainer)
        if self.ogm_ends is None:
            self.ogm_ends = scale_epochs(50, total_epochs(trainer))

    def training_step(self, trainer: "Trainer", batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """OPM's loss; the OGM coefficients of the undropped split logits are kept for after_backward."""
        o = self._forward(trainer, batch, epoch)
        k_a, k_v, _ = ogm_coefficients(o["logit_a"], o["logit_v"], o["y"], self.alpha)
        self._coeffs = (k_a, k_v)
        parts = standard_parts(o["fused"], o["logit_a"], o["logit_v"], o["y"])
        parts.update(q_a=o["q_a"], q_v=o["q_v"], theta=o["theta"], coeff_a=k_a, coeff_v=k_v)
        return ce(o["fused"], o["y"]), parts

    def after_backward(self, trainer: "Trainer", epoch: int) -> None:
        """OGM-GE's gradient modulation of both encoders inside OGM's window [ogm_starts, ogm_ends]."""
        if self._coeffs is None or not in_window(epoch, self.ogm_starts, self.ogm_ends):
            return
        k_a, k_v = self._coeffs
        modulate_grads(encoder(trainer.model, "audio"), k_a, self.ge, self._rng.gen)
        modulate_grads(encoder(trainer.model, "visual"), k_v, self.ge, self._rng.gen)
