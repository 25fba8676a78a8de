"""The course as students use it in JupyterLab: working copies (make lab), the kernel's hints for a cell run too
early, warnings without machine paths, and notebooks that opening does not modify."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from mmgap import hints, lab, paths

NB_DIR = paths.REPO_ROOT / "notebooks"


def _notebook(path: Path, *cells: tuple[str, str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nbformat.write(nb, path)
    return path


# ------------------------------------------------------------------------------------------------ hints
def test_where_defined_names_the_first_cell_that_binds_each_name(tmp_path):
    nb = _notebook(tmp_path / "x.ipynb", ("code", "dataset = 'embedded'\nseed = 0"), ("md", "## 1. Train\ntext"),
                   ("code", "import numpy as np\nfrom a import b as c\nfor i, j in []:\n    pass\n%matplotlib inline"),
                   ("code", "trainer, _ = make()\ndef helper():\n    inner = 1\nwith open('f') as fh:\n    pass"),
                   ("code", "trainer = 2"))
    nb_json = json.loads(nb.read_text())
    nb_json["cells"][0]["metadata"]["tags"] = ["parameters"]
    found = hints.where_defined(nb_json["cells"])
    assert found["dataset"].describe() == "the parameters cell (the first code cell)"
    assert {"np", "c", "i", "j"} <= set(found) and "inner" not in found
    assert found["trainer"].index == 3 and found["fh"].index == 3 and found["helper"].index == 3
    assert found["trainer"].describe() == 'the third code cell (under "1. Train", starting `trainer, _ = make()`)'


def test_a_cell_run_too_early_names_the_cell_to_run_first(tmp_path, capsys):
    """In IPython, a NameError for a name the notebook sets says which cell sets it; other NameErrors stay as
    they are, and the cell still fails (papermill and JupyterLab see an error)."""
    from IPython.core.interactiveshell import InteractiveShell

    nb = _notebook(tmp_path / "04_x.ipynb", ("md", "# 04"), ("code", "rho = None"), ("md", "## 1. Train both arms"),
                   ("code", "trainer = train(rho)"), ("code", "trainer.history"))
    shell = InteractiveShell.instance()
    try:
        assert hints.install(shell, notebook=nb)
        result = shell.run_cell("trainer.history")
        assert isinstance(result.error_in_exec, NameError)
        out = capsys.readouterr()
        text = out.out + out.err
        assert "name 'trainer' is not defined. `trainer` is set by the second code cell (under \"1. Train both " \
               "arms\", starting `trainer = train(rho)`): run the cells above this one first" in text
        result = shell.run_cell("undefined_thing")
        assert isinstance(result.error_in_exec, NameError)
        assert "is set by" not in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()


def test_the_course_notebooks_hint_at_their_own_cells():
    """Every name a course notebook's later cell needs from its parameters or validation cell is found."""
    found = hints.where_defined(nbformat.read(NB_DIR / "04_adaptive.ipynb", as_version=4).cells)
    assert found["dataset"].describe() == "the parameters cell (the first code cell)"
    assert "the parameter check" in found["cfg"].describe()
    assert found["trainer"].index > found["cfg"].index
    assert hints.hint("trainer", "04_adaptive").startswith("`trainer` is set by the ")


def test_warnings_show_no_machine_path():
    line = hints.format_warning(UserWarning("EM stopped"), UserWarning,
                                str(paths.REPO_ROOT / "mmgap" / "method.py"), 69)
    assert line == "mmgap/method.py:69: UserWarning: EM stopped\n"
    assert hints.format_warning("x", RuntimeWarning, "/tmp/ipykernel_4242/2391.py", 3).startswith("cell:3: ")
    site = "/opt/env/lib/python3.11/site-packages/sklearn/mixture/_base.py"
    assert hints.format_warning("y", UserWarning, site, 1).startswith("sklearn/mixture/_base.py:1: ")
    assert hints.format_warning("z", UserWarning, "/somewhere/else/mod.py", 2).startswith("mod.py:2: ")


# ------------------------------------------------------------------------------------------------ make lab
def test_working_copies_are_made_once_refreshed_when_untouched_and_kept_when_edited(tmp_path):
    course, work = tmp_path / "notebooks", tmp_path / "work"
    course.mkdir()
    _notebook(course / "01_a.ipynb", ("code", "x = 1"))
    _notebook(course / "02_b.ipynb", ("code", "y = 1"))
    _notebook(course / "notes.ipynb", ("code", "not part of the course"))
    assert [n.split(": ")[1] for n in lab.refresh_copies(course, work)] == ["new working copy"] * 2
    assert sorted(p.name for p in work.glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb"]
    assert lab.refresh_copies(course, work) == []
    # the student runs 01 (outputs, counts) and edits 02's code; then the course changes both
    ran = nbformat.read(work / "01_a.ipynb", as_version=4)
    ran.cells[0].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    ran.cells[0].execution_count = 1
    nbformat.write(ran, work / "01_a.ipynb")
    edited = nbformat.read(work / "02_b.ipynb", as_version=4)
    edited.cells[0].source = "y = 2  # mine"
    nbformat.write(edited, work / "02_b.ipynb")
    _notebook(course / "01_a.ipynb", ("code", "x = 10"))
    _notebook(course / "02_b.ipynb", ("code", "y = 10"))
    notes = lab.refresh_copies(course, work)
    assert "updated to the course's new version" in notes[0] and "kept (you edited it)" in notes[1]
    assert nbformat.read(work / "01_a.ipynb", as_version=4).cells[0].source == "x = 10"
    assert nbformat.read(work / "02_b.ipynb", as_version=4).cells[0].source == "y = 2  # mine"
    assert "kept" in lab.refresh_copies(course, work)[0]  # said again until the student decides


def test_lab_command_serves_localhost_and_allows_root(tmp_path):
    cmd = lab.lab_command(tmp_path, ["--no-browser"], is_root=True)
    assert cmd[1:4] == ["-m", "jupyter", "lab"] and "--ServerApp.ip=127.0.0.1" in cmd
    assert "--allow-root" in cmd and cmd[-1] == "--no-browser"
    assert "--allow-root" not in lab.lab_command(tmp_path, is_root=False)


def test_the_lab_kernel_spec_loads_the_hints(tmp_path):
    """`make lab`'s python3 kernel spec (first on JUPYTER_PATH) starts ipykernel with mmgap.hints, and a real
    kernel started from it gives the hint from the first cell a student runs."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel

    lab.write_kernel_spec(tmp_path)
    env = lab.lab_env(tmp_path)
    spec = json.loads((tmp_path / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (ipykernel)" and "--ext=mmgap.hints" in spec["argv"]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NB_DIR / "02_warmup.ipynb", work)
    old = dict(os.environ)
    os.environ.update({"JUPYTER_PATH": env["JUPYTER_PATH"], "JPY_SESSION_NAME": "02_warmup.ipynb",
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO_ROOT), old.get("PYTHONPATH")]))})
    try:
        assert KernelSpecManager().get_kernel_spec("python3").resource_dir == str(tmp_path / "kernels" / "python3")
        km, kc = start_new_kernel(kernel_name="python3", cwd=str(work))
        try:
            errors = []
            kc.execute_interactive("print(dataset)", timeout=60,
                                   output_hook=lambda m: (errors.append(m["content"])
                                                          if m["msg_type"] == "error" else None))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert errors and errors[0]["ename"] == "NameError"
    assert "`dataset` is set by the parameters cell (the first code cell)" in errors[0]["evalue"]


# ------------------------------------------------------------------------------------------------ the notebooks
@pytest.mark.parametrize("name", sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")))
def test_opening_a_notebook_changes_nothing(name):
    """The committed metadata is what the project's Python 3.11 kernel fills in when JupyterLab opens the notebook
    (else JupyterLab marks it modified at once and autosave rewrites it); working copies get the running Python's
    version instead (see the next test)."""
    from ipykernel.ipkernel import IPythonKernel

    meta = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4).metadata
    assert meta["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    info = {**IPythonKernel.language_info, "version": meta["language_info"]["version"]}
    assert meta["language_info"] == info
    assert meta["language_info"]["version"].startswith("3.11.")  # environment.yml's Python


def test_a_working_copy_has_the_kernels_metadata_and_the_course_cells(tmp_path):
    import platform

    from ipykernel.ipkernel import IPythonKernel

    lab.refresh_copies(NB_DIR, tmp_path)
    for course in NB_DIR.glob("[0-9][0-9]_*.ipynb"):
        copy = nbformat.read(tmp_path / course.name, as_version=4)
        assert copy.metadata["language_info"] == IPythonKernel.language_info  # what this kernel fills in
        assert copy.metadata["language_info"]["version"] == platform.python_version()
        assert copy.cells == nbformat.read(course, as_version=4).cells
