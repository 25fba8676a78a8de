"""Accuracy, macro-F1, per-modality accuracy and the on-device accumulators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgap.metrics import MeanAccumulator, PredictionAccumulator, accuracy, evaluate_logits, macro_f1

PRED = [0, 1, 2, 2]
Y = [0, 1, 1, 2]


def _logits(pred: list[int], m: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), m).float() * 2.0 - 0.5


def test_accuracy_from_predictions_and_logits() -> None:
    assert accuracy(PRED, Y) == 0.75
    assert accuracy(_logits(PRED), torch.tensor(Y)) == 0.75
    assert accuracy(np.asarray(_logits(PRED)), np.asarray(Y)) == 0.75


def test_macro_f1_hand_values() -> None:
    # class 0: F1 1; class 1: P 1, R 1/2 -> 2/3; class 2: P 1/2, R 1 -> 2/3
    assert macro_f1(PRED, Y) == pytest.approx(7 / 9)
    assert macro_f1(_logits(PRED), torch.tensor(Y)) == pytest.approx(7 / 9)
    assert macro_f1(PRED, Y, num_classes=4) == pytest.approx(7 / 12)  # an absent class scores 0


def test_evaluate_logits() -> None:
    y = torch.tensor(Y)
    res = evaluate_logits(_logits(PRED), _logits([0, 0, 0, 0]), _logits(Y), y)
    assert res == pytest.approx({"acc": 0.75, "f1": 7 / 9, "acc_a": 0.25, "acc_v": 1.0})


def test_prediction_accumulator_matches_one_shot() -> None:
    torch.manual_seed(0)
    f, a, v = torch.randn(10, 4), torch.randn(10, 4), torch.randn(10, 4)
    y = torch.randint(0, 4, (10,))
    acc = PredictionAccumulator()
    acc.add(f[:6], a[:6], v[:6], y[:6])
    acc.add(f[6:], a[6:], v[6:], y[6:])
    assert acc.compute() == pytest.approx(evaluate_logits(f, a, v, y))
    assert torch.equal(acc.tensors()["fused"], f.argmax(1))
    keep = PredictionAccumulator(keep_logits=True)
    keep.add(f, a, v, y)
    assert torch.equal(keep.tensors()["logit_v"], v)
    with pytest.raises(ValueError, match="empty"):
        PredictionAccumulator().compute()


def test_mean_accumulator_is_sample_weighted() -> None:
    m = MeanAccumulator()
    assert m.compute() == {}
    m.add({"loss": torch.tensor(1.0), "acc": 0.5}, n=2)
    m.add({"loss": torch.tensor(4.0), "acc": 1.0}, n=1)
    assert m.compute() == pytest.approx({"loss": 2.0, "acc": 2 / 3})


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same N"):
        accuracy([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
