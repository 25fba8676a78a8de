"""Table II's groups and verdict (mmgap.experiments.reporting): rows grouped by mmgap.baselines.FAMILIES, ours
against the best row of every group, paired against the control, against hand-computed values."""

from __future__ import annotations

import pandas as pd
import pytest

from mmgap import baselines
from mmgap import experiments as ex


def _rows(values: dict[str, list[float]], error: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    rows = [{"method": m, "label": ex.method_label(m), "seed": i, "acc": v, "f1": v}
            for m, vs in values.items() for i, v in enumerate(vs)]
    for r in rows:
        r["error"] = (error or {}).get((r["method"], r["seed"]))
    return pd.DataFrame(rows)


def test_rows_are_grouped_in_family_order_and_sweep_order_within_a_group():
    rows = _rows({"ours_prob": [0.8], "mmpareto": [0.7], "control": [0.7], "concat": [0.6], "ogm_ge": [0.7],
                  "audio_only": [0.5]})
    table = ex.grouped_table(rows, metrics=("acc",))
    assert list(table["label"]) == ["Baseline (Concat)", "Audio only", "MMPareto", "OGM-GE",
                                    "Control (warm-up loss continued)", "Ours (Prob Gap)"]
    assert list(table["family"]) == ["References", "References", "Modality-level", "Modality-level", "Control",
                                     "Ours"]
    with pytest.raises(ValueError, match="FAMILIES"):
        ex.grouped_table(_rows({"not_a_method": [0.5]}))


def test_verdict_against_the_best_row_of_every_group_hand_values():
    rows = _rows({"audio_only": [0.50, 0.52, 0.54], "concat": [0.70, 0.71, 0.72], "ogm_ge": [0.74, 0.75, 0.76],
                  "mmpareto": [0.78, 0.80, 0.82], "control": [0.78, 0.80, 0.82], "ours_prob": [0.79, 0.82, 0.85],
                  "ours_kl": [0.60, 0.60, 0.60]})
    t = ex.group_verdicts(rows, metrics=("acc",)).set_index("group")
    assert list(t.index) == ["References", "Modality-level", "Control"]  # no sample-level row was run
    assert set(t["ours"]) == {"Ours (Prob Gap)"}                          # ours at its best
    # References: best is Concat 71 ± 1; ours 82 ± 3: +11 points, spread 3 -> clear
    assert t.loc["References", "best of group"] == "Baseline (Concat)"
    assert t.loc["References", "difference"] == pytest.approx(11.0)
    assert t.loc["References", "verdict"] == "ours better"
    # Modality-level: MMPareto 80 ± 2 vs 82 ± 3: +2 within 3 -> a tie
    assert t.loc["Modality-level", "best of group"] == "MMPareto"
    assert t.loc["Modality-level", "spread"] == pytest.approx(3.0)
    assert t.loc["Modality-level", "verdict"] == "within the seed spread: a tie"
    # Control, paired over seeds: differences (1, 2, 3) -> +2 with std 1: clear, though unpaired (spread 3) a tie
    assert bool(t.loc["Control", "paired"])
    assert (t.loc["Control", "difference"], t.loc["Control", "spread"]) == pytest.approx((2.0, 1.0))
    assert t.loc["Control", "verdict"] == "ours better"
    text = ex.describe_group_verdicts(ex.group_verdicts(rows, metrics=("acc",)), rows)
    assert "No row of this run in: Sample-level" in text and "Noise: 3 seeds" in text


def test_a_newly_registered_sample_level_method_gets_its_group_and_verdict(monkeypatch):
    monkeypatch.setitem(baselines.FAMILIES, "fake_sample", "sample-level")
    rows = _rows({"concat": [0.70, 0.71, 0.72], "fake_sample": [0.90, 0.91, 0.92], "ours_prob": [0.80, 0.81, 0.82]})
    table = ex.grouped_table(rows, metrics=("acc",))
    assert list(table["family"]) == ["References", "Sample-level", "Ours"]
    t = ex.group_verdicts(rows, metrics=("acc",)).set_index("group")
    assert t.loc["Sample-level", "difference"] == pytest.approx(-10.0)
    assert t.loc["Sample-level", "verdict"] == "ours worse"


def test_failed_runs_are_left_out_and_named():
    rows = _rows({"concat": [0.70, 0.71, 0.99], "ours_prob": [0.80, 0.81, 0.82]}, error={("concat", 2): "boom"})
    t = ex.group_verdicts(rows, metrics=("acc",)).set_index("group")
    assert t.loc["References", "group mean"] == pytest.approx(70.5) and t.loc["References", "n"] == 2
    assert "FAILED runs" in ex.describe_group_verdicts(ex.group_verdicts(rows), rows)
    single = ex.group_verdicts(_rows({"concat": [0.7], "ours_prob": [0.8]}), metrics=("acc",))
    assert single.loc[0, "verdict"] == "one seed, no claim"
