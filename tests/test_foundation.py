"""The repository's standing rules: dependencies in step, clean notebooks, presets and paths."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mmgap import paths
from mmgap.config import PRESET_NAMES, ConfigError, get_preset

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names of the PyPI packages whose names differ between the two ecosystems
CONDA_NAMES = {"torch": "pytorch", "soundfile": "pysoundfile"}


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower()


def _env_yml_names() -> set[str]:
    names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"^\s{2}- ([A-Za-z0-9_.\-]+)", line)
        if m:
            names.add(_req_name(m.group(1)))
    return names


def test_environment_yml_lists_every_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda = _env_yml_names()
    missing = [
        r for r in project["dependencies"] if CONDA_NAMES.get(_req_name(r), _req_name(r)) not in conda
    ]
    assert not missing, f"environment.yml lacks runtime dependencies of pyproject.toml: {missing}"
    dev = [CONDA_NAMES.get(_req_name(r), _req_name(r)) for r in project["optional-dependencies"]["dev"]]
    assert set(dev) <= conda, "environment.yml should also carry the dev extra's test tools"
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text and "python=3.11" in text and "-e .[dev]" in text


def test_env_name_parser_is_not_vacuous():
    # guard against a parser that would accept anything: a made-up dependency must be reported missing
    assert "definitely-not-a-package" not in _env_yml_names()
    assert {"pytorch", "numpy", "papermill"} <= _env_yml_names()


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_clean_with_parameters_cell(nb: Path):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code, f"{nb.name} has no code cells"
    with_outputs = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not with_outputs, f"{nb.name}: code cells {with_outputs} carry outputs; clear them before committing"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    src = "".join(tagged[0]["source"])
    for name in ("dataset", "data_dir", "preset", "seed", "device"):
        assert re.search(rf"^{name}\s*[:=]", src, re.M), f"{nb.name}: parameters cell lacks `{name}`"


def test_notebook_names_follow_the_design_table():
    expected = {"01_preprocessing", "02_warmup", "03_gap_fitting", "04_adaptive", "05_ablations",
                "06_purification", "07_baselines"}
    present = {p.stem for p in NOTEBOOKS}
    assert present <= expected, f"unexpected notebook names: {present - expected}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "set -euo pipefail" in ci and re.search(r"^make test$", ci, re.M)


def test_gitignore_keeps_generated_things_out():
    ignored = subprocess.run(
        ["git", "check-ignore", "data/x.mp4", "runs/a/metrics.json", "outputs/01.ipynb", ".venv/bin/python"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.split()
    assert len(ignored) == 4, f"not ignored by .gitignore: {ignored}"
    tracked = subprocess.run(["git", "check-ignore", "data/README.md"], cwd=ROOT, capture_output=True)
    assert tracked.returncode == 1, "data/README.md must stay tracked"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_are_valid(name):
    preset = get_preset(name)
    assert preset.name == name and 0 < preset.train.rho <= 1


def test_preset_sizes_are_ordered():
    smoke, demo, paper = (get_preset(n) for n in PRESET_NAMES)
    assert smoke.embedded.n_clips < demo.embedded.n_clips
    assert smoke.model.width <= demo.model.width < paper.model.width == 64
    assert paper.train.lr == 2e-3 and paper.train.momentum == 0.9 and paper.train.batch_size == 64


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"rho": 1.5}, "rho=1.5"),
        ({"rho": 0.0}, "(0, 1]"),
        ({"gap": "foo"}, "gap='foo'"),
        ({"mixture": "kde"}, "mixture"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"lr": -1.0}, "lr"),
        ({"no_such_field": 1}, "unknown parameter 'no_such_field'"),
    ],
)
def test_bad_overrides_raise_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_preset("demo", **overrides)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="smoke, demo, paper"):
        get_preset("huge")


def test_overrides_reach_their_section_and_keep_the_rest():
    base = get_preset("demo")
    p = get_preset("demo", rho=0.9, width=16, n_clips=300, seeds=[4, 5])
    assert (p.train.rho, p.model.width, p.embedded.n_clips, p.seeds) == (0.9, 16, 300, (4, 5))
    assert p.train.lr == base.train.lr and base.train.rho == 0.95  # the preset itself is untouched


def test_paths_resolve_from_the_repo_root_wherever_we_are(tmp_path, monkeypatch):
    assert paths.REPO_ROOT == ROOT
    monkeypatch.chdir(tmp_path)
    assert paths.resolve("data/x") == ROOT / "data" / "x"
    assert paths.resolve(tmp_path / "y") == tmp_path / "y"
    monkeypatch.setenv("MMGAP_RUNS_DIR", str(tmp_path / "r"))
    d = paths.run_dir("smoke", "04")
    assert d == tmp_path / "r" / "smoke" / "04" and d.is_dir()


def test_paths_work_from_a_subprocess_in_notebooks_folder():
    out = subprocess.run(
        [sys.executable, "-c", "from mmgap import paths; print(paths.resolve('runs'))"],
        cwd=ROOT / "notebooks", capture_output=True, text=True, check=True,
        env={**os.environ, "MMGAP_RUNS_DIR": ""},
    ).stdout.strip()
    assert Path(out) == ROOT / "runs"


def test_progress_bars_are_widgets_interactively_and_text_headless(monkeypatch):
    """ipywidgets is a dependency (tqdm.auto widget bars in JupyterLab); MMGAP_PROGRESS=text forces text bars."""
    import tqdm.auto
    import tqdm.std

    from mmgap.progress import progress

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "ipywidgets" in {_req_name(r) for r in deps} and "ipywidgets" in _env_yml_names()
    monkeypatch.setenv("MMGAP_PROGRESS", "text")

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress(range(3), disable=True, file=Terminal())
    assert type(bar) is tqdm.std.tqdm  # a live text bar on a terminal
    monkeypatch.setenv("MMGAP_PROGRESS", "auto")
    bar = progress(range(3), disable=True)
    assert isinstance(bar, tqdm.auto.tqdm)


def test_headless_text_progress_is_one_line_per_bar(monkeypatch, capsys):
    """Under papermill (text, not a terminal) a bar is one closing line, however many items; a transient bar
    (leave=False, an epoch's) writes nothing."""
    from mmgap.progress import OneLine, progress

    monkeypatch.setenv("MMGAP_PROGRESS", "text")
    bar = progress(range(40), desc="adaptive runs (2 workers)", mininterval=2.0)
    assert isinstance(bar, OneLine)
    assert list(bar) == list(range(40))
    with progress(total=5, desc="caching") as manual:
        for _ in range(5):
            manual.update()
    assert list(progress(range(3), desc="epoch 1", leave=False)) == [0, 1, 2]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert err[0].startswith("adaptive runs (2 workers): 40/40 done in ") and err[0].endswith(" s")
    assert err[1].startswith("caching: 5/5 done in ")
