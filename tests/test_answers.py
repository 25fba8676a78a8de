"""The instructor's answer keys (mmgap.answers) on tiny hand-written run folders: each answer is the runs' numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from mmgap import answers


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _adaptive(root: Path, setting: str, seed: int, **row) -> None:
    base = {"ablation": "full", "optimizer": "sgd", "reset_optimizer": True, "mixture": "gmm", "gap": "prob",
            "rho": 0.95, "posterior": "eq9", "seed": seed, "setting": setting}
    _write(root / "smoke" / "adaptive" / f"{setting}-abc" / f"seed{seed}" / "result.json", {**base, **row})


@pytest.fixture
def runs(tmp_path: Path) -> answers.Runs:
    _write(tmp_path / "smoke" / "01_preprocessing" / "embedded" / "metrics.json",
           {"counts": {"train": 144, "val": 16, "test": 100}, "timings": {"cache_seconds": 1.5, "total_seconds": 8.0}})
    _write(tmp_path / "smoke" / "02_warmup" / "embedded-seed0" / "metrics.json",
           {"seed": 0, "concat": {"acc": 0.6, "acc_a": 0.9, "acc_v": 0.3, "acc_v_clean": 0.5, "acc_v_hard": 0.1,
                                  "acc_v_corrupt": 0.1},
            "visual_only": {"acc_v": 0.5, "acc_v_clean": 0.8, "acc_v_hard": 0.4, "acc_v_corrupt": 0.1},
            "warmup": {"test_acc": 0.7, "test_acc_v": 0.4}})
    for seed, (full_hard, no_align_hard, warm) in enumerate([(0.40, 0.30, 0.80), (0.50, 0.32, 0.82)]):
        _adaptive(tmp_path, "full-sgd-reset-gmm-prob-rho0.95", seed, acc=0.85, warm_acc=warm,
                  last_acc_v_hard=full_hard)
        _adaptive(tmp_path, "no_align-sgd-reset-gmm-prob-rho0.95", seed, ablation="no_align", acc=0.84,
                  warm_acc=warm, last_acc_v_hard=no_align_hard)
        _adaptive(tmp_path, "full-adam-same-gmm-prob-rho0.95", seed, optimizer="adam", reset_optimizer=False,
                  acc=0.93, warm_acc=0.92 + 0.01 * seed, last_acc_v_hard=0.4)
    return answers.Runs("smoke", tmp_path)


def test_every_notebook_has_answer_keys_and_each_question_is_unique() -> None:
    assert {e.notebook for e in answers.EXERCISES} == {"01", "02", "03", "04", "05", "06", "07"}
    assert len({e.question for e in answers.EXERCISES}) == len(answers.EXERCISES) >= 30


def test_binomial_noise_of_one_accuracy() -> None:
    assert answers.noise(0.9, 100) == pytest.approx(0.03)  # sqrt(0.9 * 0.1 / 100)
    assert answers.noise(0.5, 400) == pytest.approx(0.025)


def test_gamma_zero_key_compares_hard_tier_over_seeds(runs: answers.Runs) -> None:
    ans = answers._04_gamma(runs)
    assert ans.ready
    assert ans.numbers["γ = 0 last_acc_v_hard"] == pytest.approx(0.31)
    assert ans.numbers["full model last_acc_v_hard"] == pytest.approx(0.45)
    assert ans.numbers["difference"] == pytest.approx(-0.14)
    # the noise is the larger of the seed std (full: 0.0707) and 2 binomial errors over sqrt(2) seeds
    binomial = 2 * math.sqrt(0.38 * 0.62 / 100) / math.sqrt(2)
    assert ans.numbers["noise"] == pytest.approx(max(0.1 / math.sqrt(2), binomial))
    assert "lower" in ans.text


def test_adam_key_measures_each_arm_from_its_own_start(runs: answers.Runs) -> None:
    ans = answers._04_adam(runs)
    assert ans.numbers["adam, same state: gain from own start"] == pytest.approx(0.93 - 0.925)
    assert ans.numbers["sgd, reset: gain from own start"] == pytest.approx(0.85 - 0.81)


def test_tier_margin_key_names_the_largest_tier(runs: answers.Runs) -> None:
    ans = answers._02_tier(runs)
    assert ans.numbers == pytest.approx({"clean": 0.3, "hard": 0.3, "corrupt": 0.0})
    lv = answers._02_lv(runs)
    assert lv.numbers == {"concat visual": 0.3, "warm-up visual": 0.4, "visual-only": 0.5}
    assert "closes 50 %" in lv.text


def test_a_missing_run_says_which_command_makes_it(runs: answers.Runs) -> None:
    ans = answers._04_refit(runs)
    assert not ans.ready and "-p refit_every 3" in ans.text


def test_answer_all_never_raises_on_partial_runs(runs: answers.Runs) -> None:
    out = answers.answer_all(runs)
    assert len(out) == len(answers.EXERCISES)
    assert sum(a.ready for _, a in out) >= 5
    assert all(a.text for _, a in out)


def test_setting_selects_by_every_field(runs: answers.Runs) -> None:
    assert sorted(runs.setting()["seed"]) == [0, 1]
    assert runs.setting(optimizer="adam").empty  # adam rows are "same state", not the default reset
    assert len(runs.setting(optimizer="adam", reset_optimizer=False)) == 2


def test_summary_is_one_markdown_table_of_the_claims(runs: answers.Runs) -> None:
    page = answers.claims_vs_findings(runs)
    assert page.count("\n| ") == len(answers.CLAIMS) + 1
    assert "not run yet" in page or "not run" in page


def test_cli_lists_the_questions(capsys: pytest.CaptureFixture[str]) -> None:
    assert answers.main(["04", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("[04]") == sum(e.notebook == "04" for e in answers.EXERCISES)


def test_table_v_key_separates_gap_and_family(tmp_path: Path) -> None:
    rows = pd.DataFrame({"table": "V", "row": "x", "seed": 0, "mixture": ["gmm", "gmm", "smm", "smm"],
                         "gap": ["prob", "kl", "prob", "kl"], "acc": [0.80, 0.70, 0.82, 0.72]})
    (tmp_path / "smoke" / "05_ablations").mkdir(parents=True)
    rows.to_csv(tmp_path / "smoke" / "05_ablations" / "runs.csv", index=False)
    ans = answers._05_table_v(answers.Runs("smoke", tmp_path))
    assert ans.numbers["gap effect"] == pytest.approx(0.10)
    assert ans.numbers["family effect"] == pytest.approx(0.02)
    assert "the gap matters more" in ans.text
