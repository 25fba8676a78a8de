"""The lock (requirements/constraints-py311.txt) and pyproject.toml cannot drift apart."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "constraints-py311.txt"


def read_pins(text: str) -> dict[str, Version]:
    """`name==version` lines of a constraints file by canonical name (refuses ranges, duplicates, options)."""
    pins: dict[str, Version] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s=<>!~;,]+)", line)
        if not m:
            raise ValueError(f"line {n}: {raw!r} is not an exact `name==version` pin")
        name = canonicalize_name(m.group(1))
        if name in pins:
            raise ValueError(f"line {n}: {m.group(1)} is pinned twice")
        pins[name] = Version(m.group(2))
    return pins


def lock_problems(requirements: list[str], pins: dict[str, Version]) -> list[str]:
    """Direct requirements the lock leaves unpinned, or pins outside the requirement's range."""
    problems = []
    for spec in requirements:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name}: not pinned in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}: lock pins {pins[name]}, outside pyproject.toml's {req.specifier}")
    return problems


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_lock_pins_every_direct_dependency_within_pyproject_ranges():
    project = _project()
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    problems = lock_problems(project["dependencies"] + extras, read_pins(LOCK.read_text()))
    assert not problems, ("requirements/constraints-py311.txt and pyproject.toml disagree (regenerate the "
                          "lock as its header says):\n" + "\n".join(problems))


def test_lock_pins_every_line_exactly_and_leaves_mmgap_out():
    pins = read_pins(LOCK.read_text())
    assert "mmgap" not in pins, "the lock must not pin mmgap itself (it is installed editable from the clone)"
    # the packages that move this project's numbers are all in it (the package set is part of the protocol)
    assert {"torch", "torchvision", "torchaudio", "numpy", "scipy", "scikit-learn", "av"} <= set(pins)


def test_lock_checks_are_not_vacuous():
    pins = read_pins("numpy==2.4.6\nTorch==2.14.1  # comment\n\n")
    assert pins == {"numpy": Version("2.4.6"), "torch": Version("2.14.1")}
    assert lock_problems(["numpy>=1.24", "torch>=2.3"], pins) == []
    assert lock_problems(["numpy>=2.5"], pins) == ["numpy: lock pins 2.4.6, outside pyproject.toml's >=2.5"]
    assert lock_problems(["scipy>=1.10"], pins) == ["scipy: not pinned in the lock"]
    assert lock_problems(["scikit_learn>=1.3"], {"scikit-learn": Version("1.9.1")}) == []
    for bad in ("numpy>=2.4", "numpy", "-e .", "numpy==2.4.6\nnumpy==2.4.5"):
        with pytest.raises(ValueError):
            read_pins(bad)


def test_setup_installs_with_the_lock_and_reinstalls_when_it_changes():
    make = (ROOT / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)$", make, re.MULTILINE)
    assert stamp_rule and "$(LOCKS)" in stamp_rule.group(1), "the set-up stamp must depend on the lock files"
    assert "requirements/constraints-py*.txt" in make and "-c $$lock" in make
    assert "PINNED" in make and "MMGAP_UNPINNED" in make, "an unpinned set-up must stay one switch away"
    env = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in env and "-c requirements/constraints-py311.txt" in env.split("- pip:", 1)[1]
