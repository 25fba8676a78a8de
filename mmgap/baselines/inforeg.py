"""InfoReg: regulating the stronger modality's information acquisition in its prime learning window (Huang et
al., "Adaptive Unimodal Regulation for Balanced Multimodal Information Acquisition", CVPR 2025).

Follows GeWu-Lab/InfoReg_CVPR2025, main.py, ``train_epoch``. At the start of each epoch the encoders' weights
are copied (w₀, the code's ``global_model``). Per batch, each modality's score is the summed true-class softmax
of its logits s_m = Σ_i softmax(l^m_i)[y_i] (l^m of Eq. 2: the concat head's split, as the code's ``out_a``,
``out_v``); the stronger modality is the one with the larger score. While that modality is in its prime
learning window, the gradient of its encoder gets the proximal term β·(w − w₀), i.e. the gradient of
(β/2)‖w − w₀‖², with β = c_m·exp(tanh(s_strong − s_weak)); the weaker encoder is never regulated.

The prime learning window: the per-epoch Fisher-information trace of an encoder, tr = Σ over its conv and
linear weights of the mean over entries of Σ_batches g² (g the final gradient, proximal term included, as the
code accumulates it), is tracked over epochs; at the start of epoch e > 0, with n the trace window,
k = (Σ of the last n traces − Σ of the n before the last one) / Σ of the last n (the code's
``(tr1 − tr2) / tr1``, where both sums are divided by n, even while fewer than n+1 traces exist), k = 1 at
epoch 0; the window is open while k > K. A learning phase whose information still grows fast is where the
stronger modality is held back.

Defaults and their source: c = 0.95 for audio, 0.1 for visual, K = 0.05 (main.py, ``train_epoch``), a trace
window of 10 epochs in a 50-epoch run (main.py's ``[-10:]``, ``--epochs 50``): ``trace_window=10/50`` of this
run (4 epochs at 20, see `InfoRegStrategy.schedule`). Loss: CE on the fused logits only (``unimodal_losses=False``),
the paper's main row (CREMA-D 71.90); the public script also backpropagates CE(l^a) + CE(l^v), the paper's
"with unimodal losses" variant (75.71), which ``unimodal_losses=True`` reproduces.

Measured (embedded data, demo preset, seeds 0-2, 20 epochs; ``window_*`` and ``regulated_*`` of the history):
with a trace window of 4 epochs the code's rule keeps both windows open through epochs 0-3 or 0-4 (while fewer
than n + 1 traces exist, k = last trace / sum of all, which stays above 0.05), then closes them (one seed reopens
the audio window in epochs 6-9 and 18); inside them the visual encoder is the stronger one in most batches of the
first epochs and the audio encoder from about epoch 3. Test accuracy 88.89 ± 0.83 against Concat's 85.09 ± 1.25.

Versions of main.py differ: one stored copy tests ``k > 0.04`` (the paper's K) and regulates visual under
``elif score_v < score_a``, which can never hold in that branch (it would never regulate visual); we follow the
paper's rule, the stronger modality (score_v > score_a) is the visual one, and the 0.05 of the later main.py.

Deviations: (1) each modality's window comes from its own encoder's trace, where the code decides both from
the audio trace (on CREMA-D, the code's dataset, audio is the stronger modality throughout, so the two agree).
(2) The proximal term is added to the gradient of every encoder parameter that has one, as the code does; the
Fisher trace is accumulated on the device as Σ_batches mean(g²) per weight (the same number as the code's
mean of the summed g², by linearity), read once per epoch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mmgap.baselines._common import (
    MODALITIES,
    ce,
    check_fraction,
    encoder,
    epochs_of,
    run_length,
    standard_parts,
    true_class_score,
)
from mmgap.strategy import Batch, Strategy, TrainerView

THRESHOLD = 0.05
"""K: the window is open while the trace's relative growth k exceeds it (main.py: ``k > 0.05``)."""
COEFF = {"audio": 0.95, "visual": 0.1}
"""c_m of β = c_m·exp(tanh(gap)) (main.py: ``0.95 * torch.exp(gap)``, ``0.1 * torch.exp(gap)``)."""


def trace_growth(traces: list[float], window: int) -> float:
    """k = (Σ last `window` traces − Σ the `window` before the last) / Σ last `window`; 1.0 before any trace."""
    if not traces:
        return 1.0
    recent = sum(traces[-window:])
    before = sum(traces[-window - 1:-1])
    return (recent - before) / recent if recent != 0 else 0.0


def proximal_coefficients(score_a: torch.Tensor, score_v: torch.Tensor, c_a: float, c_v: float,
                          open_a: bool = True, open_v: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(β_a, β_v): c_m·exp(tanh(s_m − s_other)) for the strictly stronger modality inside its window, else 0."""
    gap = torch.tanh((score_a - score_v).abs())
    zero = torch.zeros_like(gap)
    beta_a = torch.where(score_a > score_v, c_a * torch.exp(gap), zero) * float(open_a)
    beta_v = torch.where(score_v > score_a, c_v * torch.exp(gap), zero) * float(open_v)
    return beta_a, beta_v


def fisher_layers(module: nn.Module) -> list[torch.Tensor]:
    """The conv and linear weights of a module (the ones the code's Fisher trace runs over)."""
    return [m.weight for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


class InfoRegStrategy(Strategy):
    """CE(f), with a proximal pull of the stronger encoder toward its epoch-start weights in its prime window."""

    name = "inforeg"
    reference_epochs = 50

    def __init__(self, c_audio: float = COEFF["audio"], c_visual: float = COEFF["visual"],
                 threshold: float = THRESHOLD, trace_window: float = 10 / 50, unimodal_losses: bool = False) -> None:
        for key, value in (("c_audio", c_audio), ("c_visual", c_visual)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"InfoReg {key} must be a number >= 0, got {value!r}")
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ValueError(f"InfoReg threshold must be a finite number, got {threshold!r}")
        self.coeff = {"audio": float(c_audio), "visual": float(c_visual)}
        self.threshold = float(threshold)
        self.trace_window = check_fraction("InfoReg", "trace_window", trace_window, positive=True)
        self.unimodal_losses = bool(unimodal_losses)
        self.traces: dict[str, list[float]] = {m: [] for m in MODALITIES}
        self.window_open = {m: True for m in MODALITIES}
        self._anchor: dict[str, list[torch.Tensor]] = {}
        self._fisher: dict[str, torch.Tensor] = {}
        self._scores: tuple[torch.Tensor, torch.Tensor] | None = None
        self._regulated: dict[str, torch.Tensor] = {}
        self._steps = 0
        self._window = 1

    def schedule(self, epochs: int) -> dict[str, int]:
        """The trace window in epochs of a run of ``epochs`` (the prime window itself follows the traces)."""
        return {"trace_window": max(1, epochs_of(self.trace_window, epochs))}

    def setup(self, trainer: TrainerView) -> None:
        """Resolve the trace window from the run's budget."""
        self._window = self.schedule(run_length(trainer, self.reference_epochs))["trace_window"]

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Decide each modality's window from its traces so far; copy the encoders' weights (w₀)."""
        for m in MODALITIES:
            self.window_open[m] = trace_growth(self.traces[m], self._window) > self.threshold
            self._anchor[m] = [p.detach().clone() for p in encoder(trainer.model, m).parameters()]
        self._fisher = {}
        self._regulated = {}
        self._steps = 0

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CE(f) (+ CE(l^a) + CE(l^v) with ``unimodal_losses``); the scores s_a, s_v for after_backward."""
        out = trainer.forward(batch)
        y = batch["label"]
        loss = ce(out.fused, y)
        if self.unimodal_losses:
            loss = loss + ce(out.logit_a, y) + ce(out.logit_v, y)
        self._scores = (true_class_score(out.logit_a.detach(), y), true_class_score(out.logit_v.detach(), y))
        return loss, standard_parts(out.fused, out.logit_a, out.logit_v, y)

    def after_backward(self, trainer: TrainerView, epoch: int) -> None:
        """Add β·(w − w₀) to the stronger encoder's gradient (inside its window); accumulate the Fisher traces."""
        assert self._scores is not None, "training_step must run before after_backward"
        if not self._anchor:  # hooks called without on_epoch_start (a direct call): anchor at the current weights
            self._anchor = {m: [p.detach().clone() for p in encoder(trainer.model, m).parameters()]
                            for m in MODALITIES}
        betas = proximal_coefficients(*self._scores, self.coeff["audio"], self.coeff["visual"],
                                      self.window_open["audio"], self.window_open["visual"])
        for m, beta in zip(MODALITIES, betas, strict=True):
            if self.window_open[m]:
                for p, w0 in zip(encoder(trainer.model, m).parameters(), self._anchor[m], strict=True):
                    if p.grad is not None:
                        p.grad.add_(beta.to(p.grad.dtype) * (p.detach() - w0))
                self._regulated[m] = self._regulated.get(m, 0.0) + (beta > 0).float()
            weights = [w for w in fisher_layers(encoder(trainer.model, m)) if w.grad is not None]
            if weights:
                tr = torch.stack([w.grad.float().pow(2).mean() for w in weights]).sum()
                self._fisher[m] = self._fisher[m] + tr if m in self._fisher else tr
        self._steps += 1
        self._scores = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """Append the epoch's Fisher traces; report them, the windows and the share of regulated batches."""
        row: dict[str, Any] = {}
        for m in MODALITIES:
            if m in self._fisher:
                self.traces[m].append(float(self._fisher[m]))
            row[f"fisher_trace_{m}"] = self.traces[m][-1] if self.traces[m] else float("nan")
            row[f"window_{m}"] = bool(self.window_open[m])
            row[f"regulated_{m}"] = float(self._regulated.get(m, 0.0)) / max(self._steps, 1)
        return row

    def state_dict(self) -> dict[str, Any]:
        """The Fisher traces of the epochs so far (the windows of later epochs follow from them)."""
        return {"traces": {m: list(v) for m, v in self.traces.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        saved = state.get("traces", {})
        self.traces = {m: [float(x) for x in saved.get(m, [])] for m in MODALITIES}
