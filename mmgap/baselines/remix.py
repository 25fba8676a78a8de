"""Data Remixing (Ma, Chen & Deng, "Improving multimodal learning balance and sufficiency through data remixing",
ICML 2025).

Follows MatthewMaxy/Remix_ICML2025, ``train.py``: ``train_epoch`` (the warm-up loss), ``remix`` and
``kl_divergence`` (the assignment), ``special_train_epoch`` (the remixed epoch), and ``models/models.py``
(``AVClassifier.forward(mode=...)``: the dropped modality's features zeroed before the head).

Rule. A warm-up on CE(fused) + α·CE(audio) + β·CE(visual). Then, at the start of every epoch, an eval-mode pass
without augmentation computes, per training clip and modality m, KL(softmax(l^m) ‖ uniform) over the M classes
(log base 2, probabilities clipped at 1e-9: `confidence`) and assigns the clip to the modality it is LESS
confident in (`assign`: audio when KL_a < KL_v, else visual). The epoch trains the visual subset with the audio
features zeroed (CE(fused) + γ1·CE(visual)), then the audio subset with the visual features zeroed (CE(fused) +
γ2·CE(audio)): two `PlanGroup`s, so each batch holds one modality.

Defaults and their source: α = β = 0.5, γ1 = γ2 = 1, warm-up 10 of 60 epochs (``get_arguments`` and
``scripts/run_train.sh``), here the fraction ``warmup=10/60`` of the run (`RemixStrategy.schedule`).

Deviations: (1) the KL uses the dataset's class count M; the authors' code passes 6 (CREMA-D's) whatever the
dataset (with M ≠ 6 the uniform reference is wrong; for M > 6 NumPy would not even broadcast). (2) The authors'
model has separate unimodal heads (``head_audio``, ``head_video``); ours uses the concat head's split (Eq. 2),
l^m = W^m φm + b/2, as every baseline here and the paper do. (3) A subset smaller than one batch still trains
(one short batch), larger ones drop their last incomplete batch (the trainer's rule; the authors keep it).

Why its visual branch falls at `demo` (a property of the method under this protocol, not a masking bug). At `demo`
(20 epochs, warm-up 3, SGD momentum 0.9, lr 0.02, seeds 0-2) Remix reaches 65.7 ± 5.4 % fused and 21.9 % on the
visual branch (16.7 % on `hard` clips), against concat's 85.1 % and 38.2 %. The assignment behaves as intended: at
the first remixed epoch 75-82 % of the training clips go to the visual subset, among them 99-100 % of the `hard` and
`corrupt` ones. What breaks is running single-modality groups one after the other on one optimizer: a dropped
modality's encoder gets a zero gradient, but SGD's momentum buffer keeps moving it for about 1/(1 − 0.9) = 10 more
steps along its last gradients, with nothing to correct them. Measured on seed 0 (a fixed 256 training clips, eval
mode): during the first remixed epoch's 16 visual batches the audio branch falls from 61 % to 40 % without any audio
gradient; the 3 audio batches that follow carry audio-encoder gradients up to 4× the warm-up's (norms 5.8-10.6
against 2.4-3.5), and their momentum drags audio to 10 % (chance) through the next epoch's visual batches (seeds 1
and 2, scoring pass over the training set: audio 61 % → 14 % and 52 % → 18 % within 4 remixed epochs). Audio then
looks unconfident, so in later epochs up to 80-100 % of the clips flip to the audio subset, and the two branches
take turns collapsing: the visual branch never gets the steady epochs that "Visual only" learns from (59.9 %).
Freezing the dropped encoder's BatchNorm statistics barely changes this (audio still falls to 45 %, then 10 %).
Zeroing the momentum buffers at every switch of group (a diagnostic only, not in the authors' code) keeps the audio
share at 7-32 % and gives 73.2 ± 6.0 % fused, 39.5 % visual branch and 28.8 % visual on `hard`, still below concat's
fused accuracy: after the warm-up the audio encoder trains only on the 10-30 % of clips where it is the less
confident modality, and no step trains the two modalities together. The authors' code has the same structure (one
Adam optimizer over all parameters, whose first moment carries over in the same way; features zeroed by in-place
assignment, so the dropped encoder gets zero, not absent, gradients), so this implementation keeps it: Table II
measures the published method under the protocol every row shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmgap.baselines._common import ce, check_fraction, epochs_of, run_length, standard_parts
from mmgap.baselines._sample import rows_of, score_pass
from mmgap.strategy import Batch, PlanGroup, SamplePlan, Strategy, TrainerView

REFERENCE_EPOCHS = 60
"""The epoch count of the authors' script (``--epoch 60``), which their 10-epoch warm-up is for."""
CLIP = 1e-9


def confidence(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """KL(softmax(logits) ‖ uniform over ``num_classes``) per sample, in bits (Remix's ``kl_divergence``)."""
    if logits.shape[-1] != num_classes:
        raise ValueError(f"logits have {logits.shape[-1]} classes, num_classes={num_classes}: pass the dataset's "
                         "class count")
    p = torch.softmax(logits.double(), dim=-1).clamp(CLIP, 1.0)
    return (p * torch.log2(p * num_classes)).sum(-1)


def assign(logits_a: torch.Tensor, logits_v: torch.Tensor, num_classes: int) -> torch.Tensor:
    """True where the clip goes to the AUDIO subset (audio less confident: KL_a < KL_v), False for visual."""
    return confidence(logits_a, num_classes) < confidence(logits_v, num_classes)


def remix_plan(rows: np.ndarray, to_audio: np.ndarray) -> SamplePlan:
    """The visual subset with audio zeroed, then the audio subset with visual zeroed, each shuffled on its own."""
    rows, to_audio = np.asarray(rows, dtype=np.int64), np.asarray(to_audio, dtype=bool)
    visual = PlanGroup(rows[~to_audio], keep_audio=False, keep_visual=True)
    audio = PlanGroup(rows[to_audio], keep_audio=True, keep_visual=False)
    return SamplePlan((visual, audio))


class RemixStrategy(Strategy):
    """Warm-up with unimodal terms; then each epoch every clip trains only its less confident modality."""

    name = "remix"
    reference_epochs = REFERENCE_EPOCHS

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, gamma1: float = 1.0, gamma2: float = 1.0,
                 warmup: float = 10 / 60, remix: bool = True) -> None:
        for key, value in (("alpha", alpha), ("beta", beta), ("gamma1", gamma1), ("gamma2", gamma2)):
            if not value >= 0:
                raise ValueError(f"Remix {key} must be >= 0, got {value!r}")
        self.alpha, self.beta, self.gamma1, self.gamma2 = float(alpha), float(beta), float(gamma1), float(gamma2)
        self.warmup = check_fraction("Remix", "warmup", warmup)
        self.remix = bool(remix)
        self._sched: dict[str, int] | None = None
        self._last: dict[str, float] = {}

    def schedule(self, epochs: int) -> dict[str, int]:
        """The warm-up in epochs of a run of ``epochs`` (remixed epochs from this epoch on)."""
        return {"warmup_epochs": epochs_of(self.warmup, epochs)}

    def setup(self, trainer: TrainerView) -> None:
        """Resolve the warm-up for the run's budget."""
        self._sched = self.schedule(run_length(trainer, self.reference_epochs))

    def remixing(self, epoch: int) -> bool:
        """Whether this (0-based) epoch is remixed (after the warm-up, unless remixing is off)."""
        assert self._sched is not None, "call setup(trainer) first"
        return self.remix and epoch >= self._sched["warmup_epochs"]

    def sample_plan(self, trainer: TrainerView, epoch: int) -> SamplePlan | None:
        """After the warm-up: assign every training clip to its less confident modality."""
        self._last = {}
        if not self.remixing(epoch):
            return None
        out = score_pass(trainer)
        to_audio = assign(out["logit_a"], out["logit_v"], trainer.num_classes).numpy()
        self._last = {"remix_audio_share": float(to_audio.mean())}
        return remix_plan(rows_of(out), to_audio)

    def training_step(self, trainer: TrainerView, batch: Batch,
                      epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Warm-up: CE(f) + α·CE(a) + β·CE(v). Remixed batch: CE(f) + γ·CE(kept modality)."""
        out = trainer.forward(batch)
        y = batch["label"]
        parts = standard_parts(out.fused, out.logit_a, out.logit_v, y)
        keep = batch.get("keep")
        if keep is None:
            return ce(out.fused, y) + self.alpha * ce(out.logit_a, y) + self.beta * ce(out.logit_v, y), parts
        # every row of a remixed batch keeps one and the same modality: its share (1 or 0) picks the term,
        # without a host sync
        kept_a, kept_v = keep[:, 0].float().mean(), keep[:, 1].float().mean()
        uni = self.gamma2 * kept_a * ce(out.logit_a, y) + self.gamma1 * kept_v * ce(out.logit_v, y)
        return ce(out.fused, y) + uni, parts

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> dict[str, Any]:
        """The share of clips sent to the audio subset this epoch, for the history."""
        return dict(self._last)
