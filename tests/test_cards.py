"""Protocol cards (mmgap.cards), the paper preset's per-dataset values and learning-rate schedules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmgap import baselines
from mmgap.cards import (
    AUTHORS_DATASET_PARAMS,
    AUTHORS_LR,
    KINDS,
    NUMERIC_PACKAGES,
    OURS_METHODS,
    ProtocolCard,
    cards_markdown,
    method_kwargs,
    method_preset,
    protocol_card,
)
from mmgap.config import ConfigError, get_preset, lr_at
from mmgap.data import FeatureCache
from mmgap.trainer import train_baseline

DATASETS = ("crema_d", "ave", "kinetics_sounds", "generic")


def test_the_paper_preset_takes_table_vi_rho_per_dataset_and_overrides_win():
    assert {d: get_preset("paper", dataset=d).train.rho for d in DATASETS} == {
        "crema_d": 0.95, "ave": 0.95, "kinetics_sounds": 0.90, "generic": 0.95}
    assert get_preset("paper", dataset="kinetics_sounds", rho=0.8).train.rho == 0.8
    assert get_preset("demo", dataset="kinetics_sounds").train.rho == get_preset("demo").train.rho


def test_step_schedule_counts_global_epochs_and_is_validated():
    t = get_preset("paper").train
    assert t.lr_schedule == "step" and [lr_at(t, e) for e in (0, 69)] == [2e-3, 2e-3]
    assert lr_at(t, 70) == pytest.approx(2e-4) and lr_at(t, 140) == pytest.approx(2e-5)
    demo = get_preset("demo").train
    assert demo.lr_schedule == "none" and {lr_at(demo, e) for e in range(50)} == {demo.lr}
    for bad in (dict(lr_schedule="cosine"), dict(lr_step=0), dict(lr_decay=0.0), dict(lr_decay=1.5)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            get_preset("demo", **bad)


@pytest.mark.parametrize("dataset", DATASETS + ("embedded",))
@pytest.mark.parametrize("method", OURS_METHODS + baselines.NAMES)
def test_every_card_marks_every_value_and_round_trips(dataset, method):
    card = protocol_card(get_preset("paper", dataset=dataset), dataset, method)
    assert all(e.kind in KINDS and e.source for _, e in card.entries)
    assert {"optimizer", "learning rate", "lr schedule", "batch size", "audio front end", "frames",
            "selection", "seeds", *NUMERIC_PACKAGES} <= set(card.names())
    assert ProtocolCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert card.table().shape[1] == 3 and card.markdown().count("\n") >= len(card.entries)


def test_paper_cards_cite_the_paper_and_the_authors():
    ours = protocol_card(get_preset("paper", dataset="kinetics_sounds"), "kinetics_sounds", "ours_prob")
    assert ours["rho (lambda_t = rho^epoch)"].value == 0.90 and ours["rho (lambda_t = rho^epoch)"].kind == "paper"
    assert ours["learning rate"].kind == "paper" and ours["lr schedule"].kind == "chosen"
    assert ours["batch size"].kind == "chosen" and ours["alpha, beta, gamma (Eq. 11)"].kind == "chosen"
    ogm = protocol_card(get_preset("paper", dataset="crema_d"), "crema_d", "ogm_ge")
    assert ogm["lr schedule"].kind == "authors" and "StepLR(70, 0.1)" in ogm["lr schedule"].source
    assert "alpha=0.8" in ogm["method hyperparameters"].value
    dr = protocol_card(get_preset("paper", dataset="crema_d"), "crema_d", "dr")
    assert dr["lr schedule"].value == "constant" and dr["lr schedule"].kind == "authors"
    demo = protocol_card(get_preset("demo"), "embedded", "ogm_ge")
    assert demo["lr schedule"].value == "constant" and demo["learning rate"].kind == "chosen"
    md = cards_markdown([ours, ogm, demo])
    assert md.count("|") > 50 and "torch" not in md.split("\n")[0]


def test_authors_schedules_scale_to_the_run_and_apply_only_at_paper():
    paper = get_preset("paper")
    assert method_preset(paper, "ogm_ge").train.lr_step == 70  # 70 of their 100 epochs, of our 100
    assert method_preset(paper, "mmcosine").train.lr_step == 50  # 100 of their 200
    assert method_preset(paper, "ogm_ge", epochs=50).train.lr_step == 35
    assert method_preset(paper, "dr").train.lr_schedule == "none"
    demo = get_preset("demo")
    assert all(method_preset(demo, m) is demo for m in AUTHORS_LR)
    assert method_kwargs("pmr", "crema_d", paper) == {"alpha": 2.0, "momentum": 0.0}
    assert method_kwargs("pmr", "crema_d", demo) == {} and method_kwargs("pmr", "embedded", paper) == {}
    for method, per_dataset in AUTHORS_DATASET_PARAMS.items():  # every published value builds its strategy
        for kwargs, _ in per_dataset.values():
            baselines.get(method, **kwargs)


def test_the_trainer_follows_the_schedule_across_stages_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    n = 48
    labels = np.arange(n) % 4
    audio = rng.normal(size=(n, 8, 8)).astype(np.float32)
    frames = rng.integers(0, 255, size=(n, 2, 16, 16, 3)).astype(np.uint8)
    split = np.array([0] * 32 + [1] * 8 + [2] * 8, np.int8)
    cache = FeatureCache.from_arrays(audio, frames, labels, split, [f"c{i}" for i in range(4)])
    preset = get_preset("smoke", batch_size=8, width=4, image_size=16, lr=0.04, lr_schedule="step", lr_step=2,
                        lr_decay=0.5)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from mmgap.baselines.concat import ConcatStrategy

        full = train_baseline(cache, preset, ConcatStrategy(), tmp_path / "a", epochs=5, device="cpu",
                              progress=False)
        assert [r["lr"] for r in full["history"]] == pytest.approx([0.04, 0.04, 0.02, 0.02, 0.01])
        with pytest.raises(Exception, match="interrupted"):
            train_baseline(cache, preset, ConcatStrategy(), tmp_path / "b", epochs=5, device="cpu", progress=False,
                           interrupt_at_epoch=3)
        resumed = train_baseline(cache, preset, ConcatStrategy(), tmp_path / "b", epochs=5, device="cpu",
                                 progress=False)
    finally:
        torch.set_num_threads(before)
    assert [r["lr"] for r in resumed["history"]] == [r["lr"] for r in full["history"]]
    assert resumed["test_acc"] == full["test_acc"]


def test_a_sweep_run_stores_its_card_in_metrics_json(tmp_path, monkeypatch):
    from mmgap import experiments as ex
    from mmgap.results import read_metrics

    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path))
    rng = np.random.default_rng(1)
    n = 64
    labels = np.arange(n) % 4
    cache = FeatureCache.from_arrays(rng.normal(size=(n, 8, 8)).astype(np.float32),
                                     rng.integers(0, 255, size=(n, 2, 16, 16, 3)).astype(np.uint8), labels,
                                     np.array([0] * 40 + [1] * 12 + [2] * 12, np.int8), [f"c{i}" for i in range(4)])
    smoke = get_preset("smoke", warmup_epochs=1, adaptive_epochs=1)
    rows = ex.run_methods(cache, smoke, methods=["concat"], seeds=[0], log=lambda *_: None)
    card = ProtocolCard.from_dict(read_metrics(rows.iloc[0]["run_dir"])["protocol"])
    assert (card.preset, card.dataset, card.method) == ("smoke", "embedded", "concat")
    assert card["epochs"].value == 2 and card["seeds"].value == [0] and card["device"].value == "auto"


def test_the_cards_document_is_current():
    from mmgap.cards import cards_document
    from mmgap.paths import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "protocol-cards.md").read_text(encoding="utf-8")
    assert doc == cards_document(), "docs/protocol-cards.md is stale: run `python -m mmgap.cards`"
