"""Tests of mmgap.results (metrics, mean ± std tables), mmgap.plots (figures) and mmgap.run_notebooks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mmgap import plots, results, run_notebooks  # noqa: E402


# ----------------------------------------------------------------------------------------------- results
def test_write_metrics_round_trip_converts_numpy_and_nan(tmp_path: Path) -> None:
    metrics = {
        "accuracy": np.float32(0.75),
        "per_class": np.array([1, 2, 3], dtype=np.int64),
        "loss": float("nan"),
        "params": {"rho": 0.95, "dims": (2, 3)},
        "where": tmp_path / "x",
    }
    path = results.write_metrics(tmp_path / "run", metrics)
    assert path == tmp_path / "run" / "metrics.json"
    loaded = json.loads(path.read_text())
    assert loaded == {
        "accuracy": 0.75,
        "per_class": [1, 2, 3],
        "loss": None,
        "params": {"rho": 0.95, "dims": [2, 3]},
        "where": str(tmp_path / "x"),
    }
    assert results.read_metrics(tmp_path / "run") == loaded
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["metrics.json"]  # no temp file left behind


def test_write_metrics_rejects_unstorable_and_read_missing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store a object"):
        results.write_metrics(tmp_path, {"x": object()})
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        results.read_metrics(tmp_path / "nowhere")


def test_mean_std_table_hand_computed() -> None:
    rows = [
        {"method": "ours", "seed": 0, "acc": 0.80, "f1": 0.70},
        {"method": "ours", "seed": 1, "acc": 0.90, "f1": 0.80},
        {"method": "concat", "seed": 0, "acc": 0.50, "f1": 0.40},
    ]
    stats = results.summarize(rows, ["method"], ["acc"])
    assert list(stats["method"]) == ["ours", "concat"]  # first-appearance order, not sorted
    assert stats.loc[0, "acc_mean"] == pytest.approx(0.85)
    assert stats.loc[0, "acc_std"] == pytest.approx(math.sqrt(0.005))  # sample std of 0.8, 0.9
    assert math.isnan(stats.loc[1, "acc_std"])
    table = results.mean_std_table(rows, ["method"], ["acc", "f1"], scale=100)
    assert table.to_dict("records") == [
        {"method": "ours", "acc": "85.00 ± 7.07", "f1": "75.00 ± 7.07", "n": 2},
        {"method": "concat", "acc": "50.00", "f1": "40.00", "n": 1},
    ]


def test_mean_std_table_two_group_columns_and_errors() -> None:
    df = pd.DataFrame(
        {"gap": ["prob", "prob", "kl", "kl"], "mix": ["gmm"] * 4, "acc": [1.0, 3.0, 2.0, 2.0]}
    )
    table = results.mean_std_table(df, ["gap", "mix"], ["acc"], decimals=1)
    assert table[["gap", "mix", "acc"]].values.tolist() == [["prob", "gmm", "2.0 ± 1.4"], ["kl", "gmm", "2.0 ± 0.0"]]
    with pytest.raises(KeyError, match="columns \\['nope'\\]"):
        results.mean_std_table(df, ["gap"], ["nope"])
    with pytest.raises(ValueError, match="no rows"):
        results.mean_std_table([], ["gap"], ["acc"])


def test_save_table_writes_csv_and_markdown(tmp_path: Path) -> None:
    df = pd.DataFrame({"method": ["a|b", "c"], "acc": ["85.00 ± 7.07", "50.00"], "n": [2, 1]})
    csv_path, md_path = results.save_table(df, tmp_path / "tables" / "table_ii")
    assert csv_path.name == "table_ii.csv" and md_path.name == "table_ii.md"
    assert pd.read_csv(csv_path).to_dict("records") == [
        {"method": "a|b", "acc": "85.00 ± 7.07", "n": 2},
        {"method": "c", "acc": "50.00", "n": 1},
    ]
    assert md_path.read_text(encoding="utf-8") == (
        "| method | acc | n |\n"
        "| --- | --- | ---: |\n"
        "| a\\|b | 85.00 ± 7.07 | 2 |\n"
        "| c | 50.00 | 1 |\n"
    )
    # a stem given with a suffix still yields both files, and a dotted stem keeps its dots
    results.save_table(df, tmp_path / "t.csv")
    results.save_table(df, tmp_path / "rho_0.95")
    assert {p.name for p in tmp_path.iterdir()} >= {"t.csv", "t.md", "rho_0.95.csv", "rho_0.95.md"}


# ----------------------------------------------------------------------------------------------- plots
@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


GMM = {"family": "gmm", "weights": [0.3, 0.7], "means": [2.0, 0.0], "scales": [0.5, 1.0], "balanced": 1}


def test_component_densities_hand_values() -> None:
    dens = plots.component_densities(np.array([0.0, 2.0]), GMM)
    # component 1 (balanced): 0.7 * N(0 | 0, 1) = 0.7 / sqrt(2π); component 0: 0.3 * N(2 | 2, 0.25)
    assert dens[1, 0] == pytest.approx(0.7 / math.sqrt(2 * math.pi))
    assert dens[0, 1] == pytest.approx(0.3 / (0.5 * math.sqrt(2 * math.pi)))
    lap = plots.component_densities(np.array([1.0]), {"family": "lmm", "weights": [0.6, 0.4],
                                                     "means": [1.0, 5.0], "scales": [0.5, 1.0]})
    assert lap[0, 0] == pytest.approx(0.6 / (2 * 0.5))  # Laplace peak 1/(2b)
    smm = {"family": "smm", "weights": [0.5, 0.5], "means": [0.0, 3.0], "scales": [1.0, 1.0], "dof": [1.0, 4.0]}
    assert plots.component_densities(np.array([0.0]), smm)[0, 0] == pytest.approx(0.5 / math.pi)  # Cauchy peak
    x = np.linspace(-30, 30, 20001)
    for mix in (GMM, smm):
        assert np.trapezoid(plots.component_densities(x, mix).sum(0), x) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(ValueError, match="unknown mixture family 'xyz'"):
        plots.component_densities(x, {**GMM, "family": "xyz"})
    with pytest.raises(ValueError, match="2-component"):
        plots.component_densities(x, {**GMM, "weights": [1.0]})


def test_mixture_params_from_object_and_default_balanced() -> None:
    class Fit:
        family = "gmm"
        weights = np.array([0.8, 0.2])
        means = np.array([0.1, 2.0])
        scales = np.array([1.0, 0.3])
        dof = None
        balanced = None

    p = plots.mixture_params(Fit())
    assert p["balanced"] == 0  # the heavier component when the fit does not say


def test_plot_gap_mixture_labels_the_balanced_component(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    g = np.concatenate([rng.normal(0, 1, 700), rng.normal(2, 0.5, 300)])
    flags = np.r_[np.zeros(700, bool), np.ones(300, bool)]
    fig = plots.plot_gap_mixture(g, GMM, flags=flags, path=tmp_path / "fig3")
    assert (tmp_path / "fig3.png").stat().st_size > 5000
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "balanced (k=0): π=0.70, μ=0.00" in labels
    assert "imbalanced (k=1): π=0.30, μ=2.00" in labels
    # the stacked histogram integrates to one like the mixture
    heights = sum(p.get_height() * p.get_width() for p in fig.axes[0].patches)
    assert heights == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="flags has 3 entries"):
        plots.plot_gap_mixture(g, GMM, flags=np.ones(3))


def _history(n: int, start: float) -> list[dict]:
    return [
        {"epoch": e + 1, "train_fusion": start - 0.1 * e, "train_uni_a": start - 0.2 * e,
         "train_uni_v": start, "val_acc": 0.3 + 0.05 * e, "val_acc_a": 0.3 + 0.06 * e, "val_acc_v": 0.2}
        for e in range(n)
    ]


def test_plot_branch_losses_and_missing_columns(tmp_path: Path) -> None:
    fig = plots.plot_branch_losses({"concat": _history(3, 2.0), "warm-up": _history(3, 2.2)},
                                   path=tmp_path / "fig1.png")
    assert (tmp_path / "fig1.png").is_file()
    assert len(fig.axes) == 4  # 2 runs x (loss, accuracy)
    acc_line = [ln for ln in fig.axes[2].get_lines() if ln.get_label() == "fused"][0]
    assert np.allclose(acc_line.get_ydata(), [30.0, 35.0, 40.0])  # fractions shown in percent
    with pytest.raises(KeyError, match="none of the loss columns"):
        plots.plot_branch_losses({"x": [{"epoch": 1, "foo": 1.0}]})


def test_plot_stage_accuracy_marks_the_boundary(tmp_path: Path) -> None:
    fig = plots.plot_stage_accuracy({"warm-up": _history(4, 2.0), "adaptive": _history(3, 1.0)},
                                    path=tmp_path / "fig6.png")
    ax = fig.axes[0]
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == pytest.approx(4.5)
    visual = [ln for ln in ax.get_lines() if ln.get_label() == "visual"][0]
    assert list(visual.get_xdata()) == [1, 2, 3, 4, 5, 6, 7]
    assert (tmp_path / "fig6.png").is_file()


def test_plot_gap_evolution_raw_and_stored_histograms(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gaps = {1: rng.normal(0.3, 0.2, 200), 2: rng.normal(0.1, 0.1, 200)}
    mixes = {1: GMM, 2: {**GMM, "weights": [0.1, 0.9], "means": [1.0, 0.0]}}
    fig = plots.plot_gap_evolution(gaps, mixes, path=tmp_path / "fig5.png")
    assert len(fig.axes) == 3
    pi1 = [ln for ln in fig.axes[1].get_lines() if ln.get_label().startswith("π₁")][0]
    assert list(pi1.get_ydata()) == [0.3, 0.1]  # the imbalanced weight is read through `balanced`
    stored = {3: {"counts": [1, 3, 0], "edges": [0.0, 1.0, 2.0, 3.0]}}
    fig = plots.plot_gap_evolution(stored)
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), [0.25, 0.75, 0.0])
    with pytest.raises(ValueError, match="no epochs"):
        plots.plot_gap_evolution({})


def test_gap_evolution_from_history_undoes_the_zscore() -> None:
    mix = {"family": "gmm", "weights": [0.8, 0.2], "means": [-0.5, 2.0], "scales": [0.5, 1.0], "balanced": 0}
    base = {"stage": "adaptive", "gap_hist": [2, 6, 2], "gap_hist_edges": [-1.0, 0.0, 1.0, 2.0], "mixture": mix}
    history = [
        {"stage": "warmup", "stage_epoch": 0},
        {**base, "stage_epoch": 0, "refitted": True, "gap_mean": 0.3, "gap_std": 0.2},
        {**base, "stage_epoch": 1, "refitted": False, "gap_mean": 0.3, "gap_std": 0.2},  # no refit: skipped
        {**base, "stage_epoch": 2, "refitted": True, "gap_mean": 0.1, "gap_std": 0.1},
    ]
    gaps, mixes = plots.gap_evolution_from_history(history)
    assert sorted(gaps) == [0, 2]
    assert np.allclose(gaps[0]["edges"], [0.1, 0.3, 0.5, 0.7])  # g = 0.3 + 0.2 * ĝ
    assert np.allclose(gaps[2]["edges"], [0.0, 0.1, 0.2, 0.3])
    assert np.allclose(mixes[0]["means"], [0.2, 0.7]) and np.allclose(mixes[0]["scales"], [0.1, 0.2])
    assert mix["means"] == [-0.5, 2.0]  # the history itself is left unchanged
    with pytest.raises(ValueError, match="no refit rows"):
        plots.gap_evolution_from_history(history[:1])


def test_plot_tsne_and_posteriors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    feats = {k: rng.normal(size=(36, 5)) + labels[:, None] for k in ("audio", "visual", "fused")}
    fig = plots.plot_tsne(feats, labels, class_names=["a", "b", "c"], max_points=30, path=tmp_path / "fig4.png")
    assert len(fig.axes) == 3 and (tmp_path / "fig4.png").is_file()
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 30
    with pytest.raises(ValueError, match="have 5 rows for 36 labels"):
        plots.plot_tsne({"audio": np.zeros((5, 2))}, labels)
    w1 = np.r_[np.full(10, 0.1), np.full(10, 0.9)]
    flags = np.r_[np.zeros(10), np.ones(10)]
    fig = plots.plot_posteriors(np.linspace(-1, 1, 20), w1, flags, path=tmp_path / "post.png")
    assert "AUROC = 1.000" in fig.axes[1].get_legend().get_texts()[0].get_text()


def test_show_clip_returns_player() -> None:
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    tone = 0.5 * np.sin(2 * np.pi * 697 * np.arange(800) / 8000)
    fig, player = plots.show_clip(frames, np.zeros((1, 10, 12)), tone, 8000, title="clip")
    assert len(fig.axes) == 4  # 2 frames, spectrogram, colour bar
    wav = player.data
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[24:28], "little") == 8000  # WAV header: sample rate
    assert plots.audio_player(np.zeros(80), 8000).data[:4] == b"RIFF"  # silence does not divide by zero
    with pytest.raises(ValueError, match="frames must be"):
        plots.show_clip(np.zeros((8, 8)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="sample_rate"):
        plots.audio_player(np.zeros(10), None)


# ----------------------------------------------------------------------------------------------- runner
def _notebook(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "demo"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_parse_value_like_papermill_cli() -> None:
    assert run_notebooks.parse_value("3") == 3 and isinstance(run_notebooks.parse_value("3"), int)
    assert run_notebooks.parse_value("0.95") == 0.95
    assert run_notebooks.parse_value("False") is False and run_notebooks.parse_value("None") is None
    assert run_notebooks.parse_value("[0, 1, 2]") == [0, 1, 2]
    assert run_notebooks.parse_value("kl") == "kl" and run_notebooks.parse_value("false") == "false"


def test_find_notebooks_order_and_filter(tmp_path: Path) -> None:
    for name in ("02_b.ipynb", "01_a.ipynb", "10_z.ipynb", "scratch.ipynb", "1_x.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in run_notebooks.find_notebooks(tmp_path)] == ["01_a.ipynb", "02_b.ipynb", "10_z.ipynb"]
    assert [p.name for p in run_notebooks.find_notebooks(tmp_path, ["02,10"])] == ["02_b.ipynb", "10_z.ipynb"]
    assert run_notebooks.find_notebooks(tmp_path, ["07"]) == []


@pytest.mark.slow
def test_runner_reports_failures_and_walltimes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    _notebook(nbs / "01_ok.ipynb",
              'import os\nopen("cwd.txt", "w").write(f"{preset} {seed} {os.environ[\'OMP_NUM_THREADS\']}")')
    _notebook(nbs / "02_bad.ipynb", 'raise ValueError("broken on purpose")')
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("OMP_NUM_THREADS", raising=False)
        mp.delenv("MKL_NUM_THREADS", raising=False)
        code = run_notebooks.main(["--preset", "smoke", "--out", str(out), "--notebooks", str(nbs), "-p", "seed", "3",
                                   "--threads", "1"])
    assert code == 1
    assert (nbs / "cwd.txt").read_text() == "smoke 3 1"  # in the notebooks folder, with parameters and threads
    assert (out / "01_ok.ipynb").is_file() and (out / "02_bad.ipynb").is_file()
    times = json.loads((out / "walltimes.json").read_text())
    assert times["preset"] == "smoke"
    assert times["notebooks"]["01_ok.ipynb"]["status"] == "ok"
    assert times["notebooks"]["02_bad.ipynb"]["status"] == "failed"
    assert "broken on purpose" in times["notebooks"]["02_bad.ipynb"]["error"]
    assert times["total_seconds"] == pytest.approx(sum(v["seconds"] for v in times["notebooks"].values()), abs=0.02)
    assert "02_bad.ipynb" in capsys.readouterr().err
    # a missing notebook is not a failure
    assert run_notebooks.main(["--out", str(out), "--notebooks", str(nbs), "--only", "07"]) == 0
