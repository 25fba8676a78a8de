"""The course notebooks 01-07, executed headless with papermill at the `smoke` preset.

Every run writes into a temporary runs folder (``MMGAP_RUNS_DIR``) and a temporary data folder
(``-p data_dir``), except the user-command tests, which run exactly what the README tells users to type
(their embedded smoke dataset lands in the git-ignored ``data/`` folder, as for a user).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from mmgap import paths

NB_DIR = paths.REPO_ROOT / "notebooks"
COURSE = ("01_preprocessing", "02_warmup", "03_gap_fitting", "04_adaptive", "05_ablations", "06_purification",
          "07_baselines")
# smoke-sized sweeps for the multi-run notebooks (their defaults run every table / method over the seeds)
SWEEP_PARAMS: dict[str, dict[str, Any]] = {
    "05_ablations": {"tables": ["III"], "seeds": [0, 1]},
    "06_purification": {"taus": [0.5, 0.9]},
    "07_baselines": {"methods": ["visual_only", "concat", "ogm_ge", "control", "ours_prob"]},
}
SMOKE_CLIPS = 200  # mmgap.config's smoke preset: EmbeddedConfig(n_clips=200)


def _papermill_cli() -> list[str]:
    exe = Path(sys.executable).with_name("papermill")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "papermill"]


def _execute(name: str, out: Path, **params: Any) -> None:
    import papermill as pm

    pm.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(out), parameters={"preset": "smoke", **params},
                        cwd=str(NB_DIR), progress_bar=False, kernel_name="python3")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory):
    """Runs 01-04 once, in order, into temporary runs/data folders; each test reads one notebook's outputs."""
    root = tmp_path_factory.mktemp("course")
    ns = SimpleNamespace(root=root, runs=root / "runs", data=root / "data", errors={})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGAP_RUNS_DIR", str(ns.runs))  # inherited by the kernels papermill starts
        mp.setenv("OMP_NUM_THREADS", "1")  # tiny smoke models: one thread avoids oversubscribing a busy CPU
        mp.setenv("MMGAP_PROGRESS", "text")  # headless: text bars, as mmgap.run_notebooks sets for make demo
        for name in COURSE:
            try:
                _execute(name, root / f"{name}.ipynb", data_dir=str(ns.data), **SWEEP_PARAMS.get(name, {}))
            except Exception as exc:  # reported by the notebook's own test
                ns.errors[name] = exc
        yield ns


def _run_folder(course: SimpleNamespace, name: str) -> Path:
    if name in course.errors:
        pytest.fail(f"{name} failed: {course.errors[name]}")
    return course.runs / "smoke" / name


def _metrics(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())


def _png(path: Path) -> None:
    assert path.is_file(), f"missing figure {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def _frac(x: Any) -> None:
    assert isinstance(x, float) and 0.0 <= x <= 1.0, x


# ------------------------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("name", COURSE)
def test_notebook_is_committed_clean_with_parameters_then_validation(name: str) -> None:
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert "validation" in nb.cells[tagged[0] + 1].metadata.get("tags", [])
    params = nb.cells[tagged[0]].source
    for p in ("dataset", "data_dir", "preset", "seed", "device"):
        assert f"\n{p} = " in f"\n{params}", f"parameter {p} missing"
    assert "Try this" in nb.cells[-1].source
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _jupytext_config() -> Any:
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(NB_DIR))
    assert config is not None, "notebooks/jupytext.toml is missing: the notebooks would not be paired"
    return config


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_notebook_is_paired_with_its_source_by_the_jupytext_config() -> None:
    from jupytext.paired_paths import paired_paths

    formats = _jupytext_config().formats
    formats = formats if isinstance(formats, str) else ",".join(formats)  # a list in recent jupytext
    sources = sorted(p.stem for p in (NB_DIR / "src").glob("*.py"))
    notebooks = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
    assert sources == notebooks == sorted(COURSE)
    for name in COURSE:
        pair = {Path(path) for path, _ in paired_paths(str(NB_DIR / f"{name}.ipynb"), "ipynb", formats)}
        assert pair == {NB_DIR / f"{name}.ipynb", NB_DIR / "src" / f"{name}.py"}, pair


@pytest.mark.parametrize("name", COURSE)
def test_notebook_and_source_round_trip_through_jupytext(name: str) -> None:
    """The committed .ipynb written as percent text is byte-for-byte its source, and the source read back gives
    the notebook's cells: editing either side and syncing loses nothing (`jupytext --sync`)."""
    import jupytext

    config = _jupytext_config()
    source = (NB_DIR / "src" / f"{name}.py").read_text(encoding="utf-8")
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    assert jupytext.writes(nb, fmt="py:percent", config=config) == source, (
        f"notebooks/{name}.ipynb and notebooks/src/{name}.py differ: run jupytext --sync on the one you edited")
    from_source = jupytext.reads(source, fmt="py:percent", config=config)
    assert _cells(from_source) == _cells(nb)
    assert from_source.metadata["kernelspec"] == nb.metadata["kernelspec"]


def test_jupytext_sync_carries_a_notebook_edit_back_to_its_source(tmp_path: Path) -> None:
    """What a student does in JupyterLab (edit the .ipynb, save) reaches the reviewed source, and back."""
    import shutil

    work = tmp_path / "notebooks"
    (work / "src").mkdir(parents=True)
    shutil.copy(NB_DIR / "jupytext.toml", work)
    shutil.copy(NB_DIR / "04_adaptive.ipynb", work)
    shutil.copy(NB_DIR / "src" / "04_adaptive.py", work / "src")
    nb_path, src_path = work / "04_adaptive.ipynb", work / "src" / "04_adaptive.py"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0].source += "\n\nA note added in JupyterLab."
    nbformat.write(nb, nb_path)
    os.utime(src_path, (1, 1))  # the notebook is the newer side
    jupytext_cli = [sys.executable, "-m", "jupytext"]
    sync = subprocess.run([*jupytext_cli, "--sync", str(nb_path)], capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr
    assert "# A note added in JupyterLab." in src_path.read_text(encoding="utf-8")
    # and the other way: an edit of the source reaches the notebook, keeping its cell ids
    ids = [c.id for c in nbformat.read(nb_path, as_version=4).cells]
    src_path.write_text(src_path.read_text(encoding="utf-8").replace("tsne_points = 300", "tsne_points = 200"),
                        encoding="utf-8")
    os.utime(nb_path, (1, 1))
    sync = subprocess.run([*jupytext_cli, "--sync", str(src_path)], capture_output=True, text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr
    back = nbformat.read(nb_path, as_version=4)
    assert "tsne_points = 200" in next(c.source for c in back.cells if "parameters" in c.metadata.get("tags", []))
    assert [c.id for c in back.cells] == ids
    assert all(c.outputs == [] for c in back.cells if c.cell_type == "code")


def test_jupyterlab_saves_either_side_of_a_pair(tmp_path: Path) -> None:
    """JupyterLab's contents manager with jupytext (what `make lab` runs): saving the notebook writes its source,
    and opening and saving the source writes the notebook, without outputs."""
    import shutil

    from jupyter_server.services.contents.largefilemanager import LargeFileManager

    try:
        from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class as build
    except ImportError:  # older jupytext
        from jupytext.contentsmanager import build_jupytext_contents_manager_class as build
    (tmp_path / "src").mkdir()
    shutil.copy(NB_DIR / "jupytext.toml", tmp_path)
    shutil.copy(NB_DIR / "03_gap_fitting.ipynb", tmp_path)
    shutil.copy(NB_DIR / "src" / "03_gap_fitting.py", tmp_path / "src")
    cm = build(LargeFileManager)(root_dir=str(tmp_path))
    model = cm.get("03_gap_fitting.ipynb")
    model["content"]["cells"][0]["source"] += "\n\nSaved from the notebook."
    cm.save(model, "03_gap_fitting.ipynb")
    assert "# Saved from the notebook." in (tmp_path / "src" / "03_gap_fitting.py").read_text(encoding="utf-8")
    model = cm.get("src/03_gap_fitting.py")
    assert model["type"] == "notebook"
    model["content"]["cells"][0]["source"] += "\n\nSaved from the source."
    cm.save(model, "src/03_gap_fitting.py")
    nb = nbformat.read(tmp_path / "03_gap_fitting.ipynb", as_version=4)
    assert nb.cells[0].source.endswith("Saved from the notebook.\n\nSaved from the source.")
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")


def test_adaptive_notebook_has_the_method_parameters() -> None:
    import papermill as pm

    names = set(pm.inspect_notebook(str(NB_DIR / "04_adaptive.ipynb")))
    assert {"rho", "alpha", "beta", "gamma", "gap", "mixture", "refit_every", "optimizer", "reset_optimizer"} <= names


# ------------------------------------------------------------------------------------------------ smoke runs
@pytest.mark.slow
def test_01_preprocessing(course: SimpleNamespace) -> None:
    run = _run_folder(course, "01_preprocessing") / "embedded"
    m = _metrics(run)
    assert m["num_clips"] == SMOKE_CLIPS and sum(m["counts"].values()) == SMOKE_CLIPS
    assert m["counts"]["val"] > 0 and m["counts"]["test"] > 0 and m["num_classes"] == 10
    assert m["imbalanced_frac"] == pytest.approx(0.5, abs=0.03)  # smoke: 30 % hard + 20 % corrupt
    assert m["visual_tiers"]["hard"] == pytest.approx(0.3, abs=0.02)
    table = pd.read_csv(run / "table_i.csv")
    assert table.loc[0, "Total"] == SMOKE_CLIPS and table.loc[0, "Classes"] == 10
    assert table.loc[0, "Train"] + table.loc[0, "Val (from train)"] + table.loc[0, "Test"] == SMOKE_CLIPS
    assert (run / "table_i.md").read_text().startswith("| Dataset | Total |")
    for fig in ("classes", "clip_clean", "clip_hard", "clip_corrupt", "class_counts"):
        _png(run / f"{fig}.png")


@pytest.mark.slow
def test_02_warmup(course: SimpleNamespace) -> None:
    run = _run_folder(course, "02_warmup") / "embedded-seed0"
    m = _metrics(run)
    for k in ("acc", "f1", "acc_a", "acc_v", "val_acc", "acc_v_hard"):
        _frac(m["concat"][k])
    for k in ("test_acc", "test_f1", "test_acc_a", "test_acc_v", "val_acc"):
        _frac(m["warmup"][k])
    assert m["visual_only"]["acc"] == m["visual_only"]["acc_v"]  # the visual model's accuracy, both ways
    assert m["imbalance_margin"] == pytest.approx(m["visual_only"]["acc_v"] - m["concat"]["acc_v"])
    assert m["accuracy"] == m["warmup"]["test_acc"]
    margin = pd.read_csv(run / "table_imbalance_margin.csv")
    assert list(margin["model"]) == ["Visual only (L_v alone)", "Visual branch inside concat (L_f)"]
    assert {"visual acc, clean", "visual acc, hard"} <= set(margin.columns)  # smoke: no corrupt test clip
    ckpt = torch.load(m["warmup_ckpt"], map_location="cpu", weights_only=True)
    assert ckpt["stage"] == "warmup" and ckpt["stage_complete"] and ckpt["epoch"] == 2  # smoke: 2 epochs
    assert Path(m["warmup_ckpt"]).is_relative_to(course.runs)
    table = pd.read_csv(run / "table_concat_vs_warmup.csv")
    assert list(table["method"]) == ["Concat (L_f)", "Warm-up (L_f + L_a + L_v)"]
    assert list(table["epoch"]) == [2, 2]  # both at the warm-up's last epoch (smoke: 2 epochs)
    _png(run / "fig1_branch_losses.png")


@pytest.mark.slow
def test_03_gap_fitting(course: SimpleNamespace) -> None:
    run = _run_folder(course, "03_gap_fitting") / "embedded-seed0"
    m = _metrics(run)
    assert m["dominant"] == "audio"
    for kind in ("prob", "kl"):
        fit = m["fits"][kind]
        assert fit["family"] == "gmm" and sum(fit["weights"]) == pytest.approx(1.0)
        b = fit["balanced"]  # by location: the smaller mean (or, when the means tie, the narrower component)
        assert fit["means"][b] <= fit["means"][1 - b] or fit["scales"][b] <= fit["scales"][1 - b]
    assert m["bic"]["delta"] == pytest.approx(m["bic"]["bic1"] - m["bic"]["bic2"])
    _frac(m["auroc_w1"])
    _frac(m["auroc_w1_monotone"])
    with np.load(run / "gaps.npz", allow_pickle=False) as z:
        assert len(z["index"]) == m["n_train"] and np.allclose(z["w0"] + z["w1"], 1.0)
        assert np.allclose(z["g_prob"], z["s_a"] - z["s_v"], atol=1e-6)  # Eq. 5 with audio dominant
        assert z["imbalanced"].shape == z["index"].shape
        assert set(z["visual_tier"]) <= {"clean", "hard", "corrupt"} and np.all(z["w1_monotone"] >= 0)
    bic = pd.read_csv(run / "table_bic.csv")
    assert len(bic) == 6 and set(bic["mixture"]) == {"gmm", "smm", "lmm"}
    assert len(m["most_imbalanced"]) == 4 + 1  # top_k + the most balanced clip
    assert m["most_imbalanced"][0]["w1"] >= m["most_imbalanced"][-1]["w1"]
    for fig in ("fig3_gap_mixture", "posteriors", "confidence_scatter", "clip_1", "score_rocs"):
        _png(run / f"{fig}.png")
    scores = pd.read_csv(run / "table_scores.csv")  # every method's per-sample score, graded on the ground truth
    assert len(scores) == len(m["sample_scores"]) == 7 and scores["score"].iloc[0] == "w1 (Eq. 9)"
    for r in m["sample_scores"]:
        _frac(r["AUROC hard vs clean"])
        _frac(r["AUROC corrupt vs clean"])


def _adaptive_run(runs: Path) -> Path:
    found = sorted((runs / "smoke" / "04_adaptive" / "embedded-seed0").glob("full-sgd-reset-gmm-prob-rho0.95"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_04_adaptive(course: SimpleNamespace) -> None:
    _run_folder(course, "04_adaptive")
    run = _adaptive_run(course.runs)
    m = _metrics(run)
    for k in ("accuracy", "macro_f1", "acc_audio", "acc_visual", "val_accuracy"):
        _frac(m[k])
    assert m["effective"]["rho"] == 0.95 and m["effective"]["adaptive_epochs"] == 2
    assert m["effective"]["gap_source"] == "eval" and m["effective"]["posterior"] == "eq9"
    assert m["parameters"]["rho"] is None  # None = the preset's value
    assert [r["adaptive epochs done"] for r in m["gap_evolution"]] == [0, 1, 2]  # 2 refits + after the last epoch
    assert all(0.0 < r["π1 (imbalanced)"] < 1.0 and r["|μ1 − μ0| (raw)"] >= 0 for r in m["gap_evolution"])
    assert set(m["phenomena"]) >= {"π1, imbalanced weight falls", "|μ1 − μ0|, raw gap falls",
                                   "visual acc., hard (%) rises"}
    for v in m["phenomena"].values():
        assert set(v) == {"vs_start", "vs_control", "start", "adaptive_end", "control_end"}
    # every verdict names its epoch, the same on both sides; the "why" section's facts are stored
    assert {v["epoch"] for v in m["verdicts"]} == {"last", "selected"}
    assert all(v["verdict (one seed)"] for v in m["verdicts"])
    assert {"audio_saturated", "w1_on_corrupt_more_than_hard", "balanced_off_peak", "noise_points"} <= set(
        m["why"]["findings"])
    assert [r["tier"] for r in m["why"]["posterior"]] == ["all", "clean", "hard", "corrupt"]
    # the two arms are the shared runs of notebooks 05 and 07, from one warm-up
    assert "/adaptive/full-sgd-reset-gmm-prob-rho0.95-" in m["run_dir"]
    assert "/adaptive/control-sgd-reset-gmm-prob-" in m["control_run_dir"]
    assert m["adaptive"]["warm_acc"] == m["control"]["warm_acc"]
    table = pd.read_csv(run / "table_adaptive_vs_control.csv")
    assert table.loc[1, "acc"] == pytest.approx(100 * m["accuracy"], abs=0.01)
    assert len(table) == 5 and "visual acc, hard" in table.columns
    for fig in ("fig4_tsne", "fig4b_tsne_visual_three_models", "fig5_gap_evolution", "fig5b_gap_per_tier",
                "fig6_stage_accuracy", "fig6b_adaptive_vs_control"):
        _png(run / f"{fig}.png")


@pytest.mark.slow
def test_answer_keys_run_on_the_smoke_course(course: SimpleNamespace) -> None:
    """Every "Try this" key runs on the smoke course's runs; those whose runs the course makes are ready."""
    from mmgap import answers

    for name in ("02_warmup", "03_gap_fitting", "04_adaptive"):
        _run_folder(course, name)
    runs = answers.Runs("smoke", course.runs)
    out = {ex.key.__name__: ans for ex, ans in answers.answer_all(runs)}
    assert len(out) == len(answers.EXERCISES)
    for key in ("_01_reuse", "_02_lv", "_02_tier", "_03_family", "_03_tier", "_03_kl", "_04_gamma", "_04_monotone",
                "_05_seeds", "_06_taus", "_07_visual"):
        assert out[key].ready, (key, out[key].text)
    assert not out["_04_refit"].ready and "-p refit_every 3" in out["_04_refit"].text
    page = answers.claims_vs_findings(runs)
    assert "not run yet" not in page.split("Table II")[0]  # 03 and 05 ran: the first claims are answered


def _sweep_metrics(course: SimpleNamespace, name: str) -> tuple[Path, dict[str, Any]]:
    run = _run_folder(course, name)
    m = _metrics(run)
    for k in ("accuracy", "macro_f1", "acc_audio", "acc_visual"):
        _frac(m[k])
    assert m["preset"] == "smoke" and m["timings"]["total_seconds"] > 0
    return run, m


@pytest.mark.slow
def test_05_ablations(course: SimpleNamespace) -> None:
    run, m = _sweep_metrics(course, "05_ablations")
    assert list(m["seeds"]) == [0, 1]
    table = pd.read_csv(run / "table_III.csv")
    assert len(table) == 8  # full model + the five ablations + the monotone posterior + the control
    assert (run / "table_III.md").read_text().startswith("|")
    assert list(table.columns) == ["setting", "Accuracy (%)", "Macro F1 (%)", "Audio acc. (%)", "Visual acc. (%)",
                                   "Visual acc., hard (%)", "n"]
    phen = pd.read_csv(run / "table_phenomena_vs_control.csv")
    assert phen["quantity"].iloc[0] == "π1, imbalanced weight" and (phen["n"] == 2).all()
    assert m["phenomena_vs_control"] and all(r["verdict"] for r in m["phenomena_vs_control"])
    assert (table["n"] == 2).all() and table["Accuracy (%)"].str.contains(" ± ").all()  # mean ± std over 2 seeds
    _png(run / "ablations.png")
    scores = pd.read_csv(run / "table_sample_scores.csv")  # the per-sample scores graded on each seed's warm-up
    assert len(scores) == len(m["sample_scores"]) == 7 and scores["AUROC hard vs clean"].str.contains(" ± ").all()


@pytest.mark.slow
def test_06_purification(course: SimpleNamespace) -> None:
    run, m = _sweep_metrics(course, "06_purification")
    table = m["table"]
    assert table[0]["tau"] == 0 and table[0]["data_pct"] == pytest.approx(100.0)
    kept = [row["data_pct"] for row in table[1:]]
    assert len(kept) == 2 and all(0.0 < k <= 100.0 for k in kept) and kept[0] >= kept[1]  # τ 0.5 keeps more
    assert (run / "table_VII.csv").is_file() and (run / "table_VII.md").is_file()
    table_vii = pd.read_csv(run / "table_VII.csv")
    assert table_vii["w0 threshold"].iloc[0] == "Control: 100 % of the data (τ = 0)"
    assert table_vii["Kept, clean (%)"].iloc[0] == "100.0 ± 0.0"  # the control keeps every clip
    _png(run / "purification.png")


@pytest.mark.slow
def test_07_baselines(course: SimpleNamespace) -> None:
    run, m = _sweep_metrics(course, "07_baselines")
    assert m["failed"] == [] and m["verdict"]
    table = pd.read_csv(run / "table_II.csv")
    assert list(table["Method"]) == ["Visual only", "Baseline (Concat)", "OGM-GE", "Control (warm-up loss continued)",
                                     "Ours (Prob Gap)"]
    assert table.loc[0, "Audio acc. (%)"] == "–"  # a visual model has no audio branch
    assert (run / "table_II.md").is_file()
    _png(run / "table_II.png")


@pytest.mark.parametrize("name", COURSE)
def test_headless_outputs_are_quiet_and_name_no_machine_path(course: SimpleNamespace, name: str) -> None:
    """What papermill stores: no folder of this machine (the runs and data folders, the repo, ipykernel's
    temporary files) and no progress-bar redraws (each bar is one line when it ends, mmgap.progress)."""
    import tempfile

    _run_folder(course, name)
    nb = nbformat.read(course.root / f"{name}.ipynb", as_version=4)
    texts = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for out in cell.outputs:
            texts.append(out.get("text", ""))
            texts += [out.get("data", {}).get(kind, "") for kind in ("text/plain", "text/html", "text/markdown")]
            texts += out.get("traceback", [])
    text = "\n".join(texts)
    for machine in (str(course.root), str(paths.REPO_ROOT), tempfile.gettempdir() + "/", "ipykernel_"):
        assert machine not in text, f"{name} prints {machine!r}: " + text[text.index(machine) - 200:][:400]
    bars = [line for line in text.splitlines() if "%|" in line or "it/s]" in line]
    assert not bars, bars[:5]


# ------------------------------------------------------------------------------------------------ user command
@pytest.mark.slow
@pytest.mark.parametrize("where", ["repo_root", "notebooks"])
def test_user_command_papermill_04(course: SimpleNamespace, tmp_path: Path, where: str) -> None:
    """`papermill notebooks/04_adaptive.ipynb out.ipynb -p rho 0.95 -p preset smoke`, as a user types it."""
    cwd = paths.REPO_ROOT if where == "repo_root" else NB_DIR
    src = "notebooks/04_adaptive.ipynb" if where == "repo_root" else "04_adaptive.ipynb"
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "MMGAP_RUNS_DIR": str(course.runs), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*_papermill_cli(), src, str(out), "-p", "rho", "0.95", "-p", "preset", "smoke"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "rho = 0.95" in injected[0].source
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    m = _metrics(_adaptive_run(course.runs))
    assert m["parameters"]["rho"] == 0.95 and m["effective"]["rho"] == 0.95


# ------------------------------------------------------------------------------------------------ bad parameters
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("04_adaptive", {"rho": 1.5}, "rho=1.5 is out of range: expected a decay rate in (0, 1]"),
        ("04_adaptive", {"gap": "foo"}, "gap='foo' is out of range: expected one of ('prob', 'kl')"),
        ("01_preprocessing", {"dataset": "imagenet"}, "dataset='imagenet' is unknown: choose one of embedded"),
        ("03_gap_fitting", {"mixture": "dirichlet"}, "mixture='dirichlet' is out of range"),
    ],
)
def test_bad_parameter_fails_in_the_validation_cell(tmp_path: Path, name: str, params: dict, message: str) -> None:
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / "bad.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMGAP_RUNS_DIR", str(tmp_path / "runs"))
        with pytest.raises(PapermillExecutionError) as info:
            _execute(name, out, **params)
    assert info.value.ename == "ConfigError"
    assert message in info.value.evalue
    nb = nbformat.read(out, as_version=4)
    failed = [c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)]
    assert len(failed) == 1 and "validation" in failed[0].metadata.get("tags", [])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.json"))
