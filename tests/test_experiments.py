"""The sweeps behind notebooks 05-07: plans, validation, verdicts, and tiny real runs at the smoke preset."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from mmgap import experiments as ex
from mmgap.config import ConfigError, get_preset
from mmgap.data import FeatureCache

SMOKE = get_preset("smoke", warmup_epochs=1, adaptive_epochs=1)  # the smallest real two-stage run


# ------------------------------------------------------------------------------------------------ plans


def test_plan_has_the_papers_rows_and_shares_the_full_model():
    base = ex.AdaptiveSetting.from_preset(get_preset("demo"))
    plan = ex.ablation_plan(["VI", "III", "IV", "V"], base)  # order given is not the order run
    assert [p.table for p in plan][:1] == ["III"]
    counts = pd.Series([p.table for p in plan]).value_counts().to_dict()
    assert counts == {"III": 8, "IV": 4, "V": 6, "VI": 5}  # III: the paper's 6 + monotone posterior + control
    full = [p for p in plan if p.setting == base]
    # the full model is row 1 of III, SGD-reset of IV, GMM(Prob) of V and rho 0.95 of VI
    assert sorted((p.table, p.row) for p in full) == [
        ("III", "Ours (full model)"), ("IV", "SGD (reset state)"), ("V", "GMM(Prob)"), ("VI", "0.95")]
    iii = {p.row: p.setting for p in plan if p.table == "III"}
    assert iii[ex.CONTROL_LABEL].is_control and iii[ex.CONTROL_LABEL] == ex.control_setting(base)
    assert iii[ex.POSTERIOR_ROWS["monotone"]].posterior == "monotone"
    # 23 rows, of which 3 repeat the full model: 20 distinct runs per seed
    assert len(ex.distinct_settings(plan)) == 23 - 3


def test_control_setting_ignores_what_the_control_does_not_use():
    base = ex.AdaptiveSetting.from_preset(get_preset("demo"))
    for other in (ex.AdaptiveSetting(rho=0.8), ex.AdaptiveSetting(ablation="no_align")):
        assert ex.control_setting(other) == ex.control_setting(base)  # one control run serves them all
    # how the end state is measured (gap, family, posterior) follows the arm it is compared with
    kl = ex.control_setting(ex.AdaptiveSetting(gap="kl", mixture="smm"))
    assert (kl.gap, kl.mixture) == ("kl", "smm") and kl != ex.control_setting(base)
    assert ex.control_setting(base).key == "control-sgd-reset-gmm-prob"
    adam_same = ex.AdaptiveSetting(optimizer="adam", reset_optimizer=False)
    assert ex.control_setting(adam_same).key == "control-adam-same-gmm-prob"
    # Eq. 11's weights and refit cadence do not reach the control's preset: 04 with -p gamma 0 reuses the control
    demo = get_preset("demo")
    same = [ex.setting_preset(p, ex.control_setting(base)).to_dict() for p in
            (demo, demo.with_overrides(gamma=0.0, alpha=2.0, refit_every=3))]
    assert same[0] == same[1]


def test_setting_overrides_give_adam_its_own_rate_and_distinct_keys():
    base = ex.AdaptiveSetting()
    adam_same = ex.AdaptiveSetting(optimizer="adam", reset_optimizer=False)
    assert "lr" not in base.preset_overrides(0.01)
    assert adam_same.preset_overrides(0.01)["lr"] == 0.01
    assert ex.adam_lr_for(get_preset("demo")) == pytest.approx(0.01)  # 0.5 × SGD's 0.02
    assert ex.adam_lr_for(get_preset("paper")) == pytest.approx(1e-3)  # 0.5 × the paper's 2e-3
    assert adam_same.key == "full-adam-same-gmm-prob-rho0.95"
    plan = ex.ablation_plan(ex.TABLES, base)
    keys = {p.setting.key for p in plan}
    assert len(keys) == len(ex.distinct_settings(plan))  # folder names never collide


@pytest.mark.parametrize("bad, match",
                         [([], "non-empty"), (["VII"], "unknown"), ("3", "list"), ("VII", "unknown")])
def test_check_tables_rejects_unknown_tables(bad, match):
    with pytest.raises(ValueError, match=match):
        ex.check_tables(bad)


def test_check_tables_accepts_a_comma_string():
    assert ex.check_tables("VI, III") == ["III", "VI"]


def test_check_seeds():
    assert ex.check_seeds(None, get_preset("demo")) == [0, 1, 2]
    assert ex.check_seeds(None, get_preset("demo"), first=5) == [5, 6, 7]
    with pytest.raises(ConfigError,
                       match=re.escape("seeds=3 is one number where a list is expected: pass seeds = [3]")):
        ex.check_seeds(3, SMOKE)  # papermill -p seeds 3: refused, not run as seed 3 alone
    assert ex.check_seeds("[3]", SMOKE) == [3]
    for bad in ([], [0, 0], [-1], ["a"], [True]):
        with pytest.raises(ValueError, match="seeds"):
            ex.check_seeds(bad, SMOKE)


def test_check_taus_and_methods():
    assert ex.check_taus([0.9, 0.5, 0.9]) == [0.5, 0.9]
    for bad in ([], [0.0], [1.5], ["x"]):
        with pytest.raises(ValueError, match="taus"):
            ex.check_taus(bad)
    assert ex.check_methods(["concat", "ours_kl"]) == ["concat", "ours_kl"]
    assert ex.check_methods(None)[-2:] == ["ours_prob", "ours_kl"]
    with pytest.raises(ValueError, match="unknown"):
        ex.check_methods(["ogm_gee"])


# ------------------------------------------------------------------------------------------------ verdicts


def _rows(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": i, "acc": v, "f1": v} for m, vs in values.items()
                         for i, v in enumerate(vs)])


def test_verdict_wins_ties_and_losses_follow_the_seed_spread():
    # ours 0.80 ± 0.01, concat 0.70 ± 0.01: a 10-point win, spread 1 point
    win = ex.verdict(_rows({"concat": [0.69, 0.70, 0.71], "ours_prob": [0.79, 0.80, 0.81]}), metrics=("acc",))
    assert "ours wins by 10.00 points" in win
    # ours 0.72 ± 0.05 vs 0.70 ± 0.01: +2 points within a 5-point spread
    tie = ex.verdict(_rows({"concat": [0.69, 0.70, 0.71], "ours_prob": [0.67, 0.72, 0.77]}), metrics=("acc",))
    assert "+2.00 points" in tie and "a tie" in tie
    values = {"mla": [0.89, 0.90, 0.91], "concat": [0.5, 0.5, 0.5], "ours_prob": [0.79, 0.80, 0.81]}
    loss = ex.verdict(_rows(values), metrics=("acc",))
    assert "ours loses by 10.00 points" in loss and "baselines above ours on accuracy: MLA" in loss
    single = ex.verdict(_rows({"concat": [0.7], "ours_prob": [0.8]}), metrics=("acc",))
    assert "single seed" in single


def test_describe_purification_counts_clear_gains():
    rows = pd.DataFrame([
        {"row": "Baseline", "tau": 0.0, "seed": s, "data_pct": 100.0, "acc": a}
        for s, a in enumerate([0.70, 0.71, 0.72])
    ] + [
        {"row": "≥ 50%", "tau": 0.5, "seed": s, "data_pct": 80.0, "acc": a}
        for s, a in enumerate([0.75, 0.76, 0.77])
    ] + [
        {"row": "≥ 90%", "tau": 0.9, "seed": s, "data_pct": 60.0, "acc": math.nan} for s in range(3)
    ])
    text = ex.describe_purification(rows)
    assert "71.00 ± 1.00 % over 3 seed(s)" in text
    assert "w0 ≥ 0.50: 80.0 % of the data, 76.00 % accuracy (+5.00 points, clearly better)" in text
    assert "too few clips" in text
    assert "at 1 of 2 thresholds" in text


def test_describe_ablations_names_the_best_row():
    full = ex.AdaptiveSetting().key
    rows = pd.DataFrame(
        [{"table": "VI", "row": "0.95", "setting": full, "seed": s, "acc": a, "warm_acc": 0.75}
         for s, a in enumerate([0.8, 0.82])]
        + [{"table": "VI", "row": "1.00", "setting": "x", "seed": s, "acc": a} for s, a in enumerate([0.7, 0.71])]
    )
    text = ex.describe_ablations(rows, full)
    assert "1.00: 70.50 % (-10.50 points, worse than the full model)" in text
    assert "best row: 0.95 (the full model)" in text
    # the warm-up's last epoch, where the adaptive stage starts, and the gain over it
    assert ("Its warm-up alone (Eq. 10), at the last warm-up epoch where both stages meet: 75.00 ± 0.00 %; "
            "the full model adds +6.00 points to its own start.") in text


# ------------------------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    """120 clips, 4 classes; the audio carries the label, the frames are noise (a weak visual branch)."""
    rng = np.random.default_rng(0)
    n, k = 120, 4
    labels = np.arange(n) % k
    audio = rng.normal(size=(n, 16, 16)).astype(np.float32)
    audio[np.arange(n), labels * 4, :] += 3.0
    frames = rng.integers(0, 255, size=(n, 2, 20, 20, 3)).astype(np.uint8)
    split = np.zeros(n, np.int8)
    split[64:88] = 1
    split[88:] = 2
    return FeatureCache.from_arrays(audio, frames, labels, split, [f"class{i}" for i in range(k)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("runs")
    mp.setenv("MMGAP_RUNS_DIR", str(folder))
    yield folder
    mp.undo()


def _check_scores(row: dict) -> None:
    for m in ("acc", "f1", "acc_a", "acc_v", "val_acc"):
        assert 0.0 <= row[m] <= 1.0, (m, row[m])


def test_run_ablations_shares_the_full_model_and_reuses_finished_runs(cache, runs, monkeypatch):
    monkeypatch.setattr(ex.settings, "ABLATION_ROWS", (("full", "Ours (full model)"),))
    monkeypatch.setattr(ex.settings, "RHOS", (1.0, 0.95))
    logs: list[str] = []
    rows = ex.run_ablations(cache, SMOKE, tables=["III", "VI"], seeds=[0], log=logs.append)
    assert list(rows["table"]) == ["III", "III", "III", "VI", "VI"]
    assert list(rows["row"]) == ["Ours (full model)", ex.POSTERIOR_ROWS["monotone"], ex.CONTROL_LABEL, "1.00", "0.95"]
    assert {"table", "row", "setting", "seed", "acc", "f1", "acc_a", "acc_v", "seconds", "reused"} <= set(rows)
    for row in rows.to_dict(orient="records"):
        _check_scores(row)
    full = rows[rows["row"].isin(["Ours (full model)", "0.95"])]
    assert full["setting"].nunique() == 1 and full["acc"].nunique() == 1  # one run serves both tables
    # both arms record where they end; the adaptive run also where it started (its first refit)
    ctrl = rows[rows["row"] == ex.CONTROL_LABEL].iloc[0]
    first = full.iloc[0]
    assert ctrl["setting"] == "control-sgd-reset-gmm-prob" and math.isnan(ctrl.get("start_pi1", math.nan))
    for r in (first, ctrl):
        # the balanced component is the one nearest a raw gap of 0 (here the noise frames put some clips' visual
        # branch ahead, so the imbalanced mean may lie on either side of it)
        assert 0.0 < r["end_pi1"] < 1.0 and abs(r["end_mu1_raw"]) >= abs(r["end_mu0_raw"])
        assert 0.0 <= r["last_acc"] <= 1.0 and r["warm_acc"] == first["warm_acc"]  # the same warm-up
    assert 0.0 < first["start_pi1"] < 1.0
    assert any("training one" in line for line in logs)  # the warm-up was trained once, with a note
    assert (runs / "smoke" / "warmup").is_dir()
    again = ex.run_ablations(cache, SMOKE, tables=["VI"], seeds=[0], log=logs.append)
    assert again["reused"].all()
    assert list(again["acc"]) == list(rows.loc[rows["table"] == "VI", "acc"])


def test_phenomena_table_pairs_seeds_and_states_the_verdict():
    def arm(setting: str, seed: int, end_pi1: float, last_hard: float, start: bool) -> dict:
        row = {"setting": setting, "seed": seed, "end_pi1": end_pi1, "end_mu_sep": 0.5,
               "end_gap_mean": 0.3, "warm_acc_v_hard": 0.2, "last_acc_v_hard": last_hard, "warm_acc_v": 0.5,
               "last_acc_v": 0.55, "warm_acc": 0.8, "last_acc": 0.82}
        if start:
            row.update(start_pi1=0.4, start_mu_sep=0.8, start_gap_mean=0.4)
        return row

    rows = pd.DataFrame([arm("full", s, 0.30 + 0.01 * s, 0.40 + 0.01 * s, True) for s in range(3)]
                        + [arm("ctrl", s, 0.35 + 0.01 * s, 0.30 - 0.02 * s, False) for s in range(3)])
    table = ex.phenomena_table(rows, "full", "ctrl").set_index("quantity")
    # π1: adaptive ends 0.05 below the control on every seed (std 0): a clear effect in the expected direction
    assert table.loc["π1, imbalanced weight", "verdict"] == "as the paper expects (from its start and vs the control)"
    assert table.loc["π1, imbalanced weight", "adaptive − start"] == "-0.09 ± 0.01"
    assert table.loc["π1, imbalanced weight", "adaptive − control"] == "-0.05 ± 0.00"
    assert table.loc["π1, imbalanced weight", "start (warm-up)"] == "0.40 ± 0.00"
    # hard-tier visual accuracy: +10, +13, +16 points (mean 13, std 3): clear
    assert table.loc["visual acc., hard (%)", "adaptive − control"] == "13.00 ± 3.00"
    assert table.loc["visual acc., hard (%)", "verdict"] == "as the paper expects (from its start and vs the control)"
    # identical ends: no difference, within the spread
    assert table.loc["visual acc. (%)", "verdict"] == "within the seed spread of the control"
    assert ex.phenomena_table(rows, "full", "other").empty
    # arms measured with different gaps: their mixtures are not compared, their accuracies still are
    mixed = rows.assign(gap=["prob"] * 3 + ["kl"] * 3)
    assert set(ex.phenomena_table(mixed, "full", "ctrl")["quantity"]) == {
        "visual acc., hard (%)", "visual acc. (%)", "fused acc. (%)"}


def test_run_purification_rows(cache, runs):
    rows = ex.run_purification(cache, SMOKE, taus=[0.5], seeds=[0], log=lambda *_: None)
    assert list(rows["tau"]) == [0.0, 0.5]
    base, cut = rows.iloc[0], rows.iloc[1]
    assert base["data_pct"] == 100.0 and base["subset_size"] == base["train_size"] == 64
    assert 0.0 < cut["data_pct"] <= 100.0
    assert cut["subset_size"] == round(cut["data_pct"] * 64 / 100)
    if not math.isnan(cut["acc"]):
        _check_scores(cut.to_dict())
    _check_scores(base.to_dict())
    assert 0.0 <= base["warmup_acc"] <= 1.0
    assert base["warmup_acc"] == cut["warmup_acc"]  # one warm-up per seed serves every threshold
    table = ex.purification_table(rows)
    assert list(table.columns) == ["w0 threshold", "Data (%)", "Accuracy (%)", "Macro F1 (%)", "n"]  # no tiers here
    assert table.iloc[0]["Data (%)"] == "100.0"


def test_run_methods_rows_and_reuse_of_ours(cache, runs):
    rows = ex.run_methods(cache, SMOKE, methods=["concat", "ours_prob"], seeds=[0], log=lambda *_: None)
    assert list(rows["method"]) == ["concat", "ours_prob"]
    assert list(rows["label"]) == ["Baseline (Concat)", "Ours (Prob Gap)"]
    for row in rows.to_dict(orient="records"):
        _check_scores(row)
    # ours_prob is the full model of notebook 05: the same setting, hence the same (shared) run folder
    ours = rows[rows["method"] == "ours_prob"].iloc[0]
    assert ours["setting"] == ex.AdaptiveSetting.from_preset(SMOKE).key
    assert str(runs / "smoke" / "adaptive") in ours["run_dir"]
    assert "Accuracy" in ex.verdict(rows)


@pytest.mark.slow
def test_parallel_workers_give_the_serial_results(cache, runs, tmp_path):
    """Two worker processes (each one torch thread) reproduce the serial runs exactly; logs come back."""

    import torch

    disk = _on_disk(cache, tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = ex.run_methods(disk, SMOKE, ["concat"], seeds=[0, 1], root=tmp_path / "a", workers=1,
                                log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    parallel = ex.run_methods(disk, SMOKE, ["concat"], seeds=[0, 1], root=tmp_path / "b", workers=2,
                              log=lambda *_: None)
    assert list(parallel["seed"]) == [0, 1]
    assert not parallel["reused"].any()
    for m in ("acc", "f1", "acc_a", "acc_v"):
        assert list(parallel[m]) == list(serial[m]), m
    assert ex.default_workers("cpu") >= 1


def _warning_job(cache, log, seed: int, warn: bool) -> dict:
    """A job for `run_jobs` (module level: spawned workers import it by name) that may warn like a mixture fit."""
    import warnings

    from mmgap import paths

    if warn:
        warnings.warn(f"gmm mixture EM stopped at max_iter=200 (seed {seed}): raise max_iter or tol", UserWarning,
                      stacklevel=1)
    log(f"ran seed {seed}")
    return {"seed": seed, "run_dir": str(paths.runs_root() / "smoke" / "toy" / f"seed{seed}")}


@pytest.mark.parametrize("workers", [1, 2])
def test_run_jobs_names_the_runs_that_warned_and_releases_its_workers(cache, runs, tmp_path, capfd, workers):
    """Warnings of a sweep become one line naming its runs (none printed as they come, here or in a worker),
    and the sweep's worker processes end with it (they used to stay until the kernel stopped)."""
    import multiprocessing

    logs: list[str] = []
    jobs = [(_warning_job, {"seed": s, "warn": s != 1}) for s in range(3)]
    out = ex.run_jobs(_on_disk(cache, tmp_path), jobs, workers=workers, log=logs.append, desc="toy runs")
    assert [r["seed"] for r in out] == [0, 1, 2]
    assert sorted(line for line in logs if line.startswith("ran")) == ["ran seed 0", "ran seed 1", "ran seed 2"]
    assert [line for line in logs if "Warning" in line] == [
        "toy runs: UserWarning in 2 of 3 runs (smoke/toy/seed0, smoke/toy/seed2), e.g. gmm mixture EM stopped at "
        "max_iter=200 (seed 0)"]
    assert "max_iter" not in capfd.readouterr().err
    assert multiprocessing.active_children() == []


def _on_disk(cache: FeatureCache, tmp_path) -> FeatureCache:
    """The module's cache written as a cache folder (workers load it by path)."""
    import json

    from mmgap.data import load_cache
    from mmgap.data.cache import CACHE_FORMAT

    folder = tmp_path / "cache"
    folder.mkdir()
    for name in ("audio", "frames", "labels", "split"):
        np.save(folder / f"{name}.npy", np.asarray(getattr(cache, name)))
    (folder / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, "clip_ids": cache.clip_ids,
                                                  "class_names": cache.class_names, "protocol": {}}))
    return load_cache(folder)


def test_a_diverging_baseline_leaves_an_empty_row_and_is_retried(cache, runs, monkeypatch):
    def diverge(*args, **kwargs):
        raise FloatingPointError("training loss became nan in pmr epoch 0: lower the learning rate")

    monkeypatch.setattr(ex.runs, "train_baseline", diverge)
    logs: list[str] = []
    rows = ex.run_methods(cache, SMOKE, ["pmr"], seeds=[0], log=logs.append)
    row = rows.iloc[0]
    assert math.isnan(row["acc"]) and "FloatingPointError" in row["error"]
    assert any(line.startswith("FAILED: pmr, seed 0") for line in logs)
    assert ex.table_of(rows, "label").iloc[0]["acc"] == "–"
    # not stored as finished: the next call trains it again
    assert not list((runs / "smoke" / "07_baselines" / "runs").glob("pmr-*/seed0/result.json"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "imagenet"}, "dataset='imagenet' is unknown"),
        ({"seed": -1}, "seed=-1 must be a non-negative integer"),
        ({"device": "tpu"}, "device='tpu' must be"),
        ({"fresh": "yes"}, "fresh='yes' must be True or False"),
        ({"workers": 0}, "workers=0 must be a positive integer"),
    ],
)
def test_check_run_params_names_the_bad_value(kwargs, message):
    args = {"dataset": "embedded", "seed": 0, "device": "cpu", "fresh": False, "workers": None, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        ex.check_run_params(**args)


def test_check_run_params_defaults_workers_to_the_cores():
    dev, workers = ex.check_run_params("embedded", 0, "cpu", False, None)
    assert str(dev) == "cpu" and workers == ex.default_workers("cpu") >= 1


# ------------------------------------------------------------------------------------------------ check_params
def _params(notebook: str, **changes) -> dict:
    """A notebook's parameters cell, as papermill would leave its globals, with `changes`."""
    import papermill as pm

    from mmgap import paths

    nb = next(paths.NOTEBOOKS_DIR.glob(f"{notebook}*.ipynb"))
    values = {name: p["default"] for name, p in pm.inspect_notebook(str(nb)).items()}
    return {name: eval(text) for name, text in values.items()} | {"preset": "smoke", **changes}


@pytest.mark.parametrize(
    ("notebook", "changes", "message"),
    [
        ("01", {"dataset": "imagenet"}, "dataset='imagenet' is unknown: choose one of embedded"),
        ("02", {"seed": -1}, "seed=-1 must be a non-negative integer"),
        ("03", {"mixture": "dirichlet"}, "mixture='dirichlet' is out of range"),
        ("03", {"top_k": 0}, "top_k=0 must be an integer >= 1"),
        ("04", {"rho": 1.5}, "rho=1.5 is out of range: expected a decay rate in (0, 1]"),
        ("04", {"gap": "foo"}, "gap='foo' is out of range: expected one of ('prob', 'kl')"),
        ("04", {"alpha": "1"}, "alpha='1' must be a number (or None for the preset's value)"),
        ("04", {"reset_optimizer": 1}, "reset_optimizer=1 must be True or False"),
        ("04", {"tsne_points": 5}, "tsne_points=5 must be an integer >= 10"),
        ("05", {"tables": ["IX"]}, "IX"),
        ("05", {"adam_lr": 0}, "adam_lr=0 must be a positive learning rate"),
        ("05", {"workers": 0}, "workers=0 must be a positive integer"),
        ("06", {"taus": [1.5]}, "[1.5] are not thresholds in (0, 1]"),
        ("06", {"fresh": "yes"}, "fresh='yes' must be True or False"),
        ("07", {"methods": ["magic"]}, "unknown ['magic']"),
        ("07", {"device": "tpu"}, "device='tpu' must be"),
        ("08", {}, "notebook='08': no parameter checks for it"),
    ],
)
def test_check_params_names_the_bad_value(notebook, changes, message):
    ns = _params(notebook if notebook != "08" else "01", **changes)
    with pytest.raises(ConfigError, match=re.escape(message)):
        ex.check_params(ns, notebook=notebook)


def test_check_params_resolves_the_defaults_in_place():
    ns = _params("05", seeds="[3, 4]", tables="III,VI")
    cfg, dev = ex.check_params(ns, notebook="05_ablations")
    assert cfg.name == "smoke" and str(dev) in ("cpu", "cuda")
    assert ns["seeds"] == [3, 4] and ns["tables"] == ["III", "VI"]
    assert ns["workers"] == ex.default_workers(str(dev)) and ns["adam_lr"] == ex.adam_lr_for(cfg)
    ns = _params("04", rho=0.9, gap="kl")
    cfg, _ = ex.check_params(ns, notebook="04")
    assert (cfg.train.rho, cfg.train.gap) == (0.9, "kl")
    ns = _params("06", seeds=None, seed=2, taus=[0.9, 0.5])
    cfg, _ = ex.check_params(ns, notebook="06")
    assert ns["seeds"] == [2 + k for k in range(len(cfg.seeds))] and ns["taus"] == [0.5, 0.9]


def test_a_parameter_papermill_injects_that_the_notebook_lacks_is_refused():
    # papermill runs its -p values as a cell headed "# Parameters"; IPython keeps its source in In
    ns = _params("04", rho=0.5) | {"In": ["", "# Parameters\nrhoo = 0.5\npreset = \"smoke\"\n", "cfg, dev = ..."]}
    expected = "unknown parameter(s) 'rhoo' (did you mean 'rho'?) for notebook 04: it takes dataset, data_dir, rebuild"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        ex.check_params(ns, notebook="04_adaptive")
    ns["In"][1] = "# Parameters\nrho = 0.5\n"
    assert ex.check_params(ns, notebook="04_adaptive").preset.train.rho == 0.5
    assert ex.notebook_parameters("05")[:5] == ["dataset", "data_dir", "rebuild", "preset", "seed"]


def test_taus_as_one_number_is_refused_with_the_list_form():
    with pytest.raises(ConfigError,
                       match=re.escape("pass taus = [0.9] in the parameters cell (papermill: -p taus '[0.9]')")):
        ex.check_taus(0.9)


def test_check_params_before_the_parameters_cell_says_to_run_it():
    with pytest.raises(ConfigError, match=re.escape("run the parameters cell (the first code cell) before this one")):
        ex.check_params({"__name__": "__main__"}, notebook="02_warmup")
