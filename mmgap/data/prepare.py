"""`prepare(dataset, ...)`: the one call notebooks use to get a feature cache (generate/find, decode, cache)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mmgap.config import Preset, get_preset
from mmgap.data import ave, crema_d, embedded, generic, kinetics_sounds
from mmgap.data.cache import (
    DamagedCache,
    FeatureCache,
    build_cache,
    cache_folder,
    is_built,
    load_cache,
    print_report,
    write_failed,
)
from mmgap.data.manifest import README_HINT, DataError, Manifest, NoUsableClips, no_usable_clips
from mmgap.data.protocols import PROTOCOLS, Protocol, embedded_protocol
from mmgap.paths import resolve

DATASETS = ("embedded", "crema_d", "ave", "kinetics_sounds", "generic")
_MODULES = {"crema_d": crema_d, "ave": ave, "kinetics_sounds": kinetics_sounds, "generic": generic}


def embedded_root(data_dir: str | Path | None, preset: Preset, data_seed: int) -> Path:
    """Folder of the generated dataset: `<data_dir>/<preset>-seed<k>` (a config hash is added to a preset
    whose embedded section was overridden, so variants do not overwrite each other)."""
    base = resolve(data_dir) if data_dir is not None else resolve("data/embedded")
    cfg = preset.embedded
    name = preset.name
    if cfg != get_preset(preset.name).embedded:
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
        name = f"{name}-{digest}"
    return base / f"{name}-seed{data_seed}"


def build_dataset_manifest(dataset: str, root: Path, data_seed: int = 0, val_frac: float = 0.0,
                           **kwargs: Any) -> Manifest:
    """The manifest of a real dataset folder (raises DataError with a README pointer when it is missing).

    `val_frac` reaches CREMA-D only, whose `split_by="actor"` carves validation actors itself."""
    if not root.exists():
        raise DataError(f"{dataset}: dataset folder {root} does not exist. Download the dataset and put it "
                        f"there (or pass data_dir=...); {README_HINT}.")
    if dataset == "crema_d":
        return crema_d.build_manifest(root, split_seed=data_seed, val_frac=val_frac, **kwargs)
    return _MODULES[dataset].build_manifest(root, **kwargs)


CACHE_ENV = "MMGAP_CACHE_DIR"


def cache_root_for(dataset: str, data_root: Path, cache_dir: str | Path | None = None) -> Path:
    """Where a dataset's feature caches go: ``<cache_dir>/<dataset>`` when `cache_dir` or ``$MMGAP_CACHE_DIR``
    is set (a dataset on a read-only disk), else ``<data folder>/cache`` beside the raw data."""
    chosen = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
    if chosen is not None:
        return resolve(chosen) / dataset
    return (data_root.parent if data_root.is_file() else data_root) / "cache"


def prepare(dataset: str = "embedded", data_dir: str | Path | None = None, preset: Preset | str = "demo",
            seed: int = 0, workers: int | None = None, rebuild: bool = False, *, data_seed: int = 0,
            protocol: Protocol | None = None, progress: bool = True, cache_dir: str | Path | None = None,
            **manifest_kwargs: Any) -> FeatureCache:
    """Generate or find the raw data, build or reuse its feature cache, and return it (memory-mapped).

    `seed` is the run seed and does not change the data: the embedded dataset, the CREMA-D 9:1 split and
    the validation carve are fixed by `data_seed` (default 0), so every run seed trains on the same dataset
    and cache, as with a real dataset. `workers`: processes (None automatic, 0 serial). `rebuild` rebuilds
    the cache (the generated embedded clips are reused when identical). `protocol` overrides the dataset's
    default protocol; extra keyword arguments go to the dataset's `build_manifest` (e.g. CREMA-D's
    `split_files` or `split_by="actor"`, Kinetics-Sounds' `class_list_file`). When nothing usable is found,
    the DataError names the main reasons and every skipped clip is written to `<cache folder>/exclusions.csv`.

    `cache_dir` (else the environment variable ``MMGAP_CACHE_DIR``) puts the feature cache apart from the
    raw data, under ``<cache_dir>/<dataset>/`` (default: ``<data folder>/cache``), so a read-only dataset
    works. The cache key follows the files' names, sizes and modification times, so files re-exported in
    place are decoded again; `rebuild=True` forces it. A data report (clips whose audio and video lengths
    disagree, too few frames, classes with few training clips, ...) is printed at the build and saved as
    ``data_report.txt`` / ``.json`` in the cache folder. A damaged cache (its arrays differ from the
    digests in its meta.json) is noted and built again.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    p = get_preset(preset) if isinstance(preset, str) else preset
    del seed  # documented above: the run seed does not select the data
    if dataset == "embedded":
        root = embedded.generate_embedded(embedded_root(data_dir, p, data_seed), p.embedded, data_seed,
                                          workers=workers, progress=progress)
        manifest = embedded.build_manifest(root)
        proto = protocol or embedded_protocol(p.embedded, val_frac=p.train.val_frac, split_seed=data_seed)
        cache_root = cache_root_for(dataset, root, cache_dir)
    else:
        root = resolve(data_dir) if data_dir is not None else resolve(f"data/{dataset}")
        proto = protocol or PROTOCOLS[dataset].replace(val_frac=p.train.val_frac, split_seed=data_seed)
        cache_root = cache_root_for(dataset, root, cache_dir)
        try:
            manifest = build_dataset_manifest(dataset, root, data_seed, proto.val_frac, **manifest_kwargs)
        except NoUsableClips as e:  # the same error, now naming the file that lists every skipped clip
            raise no_usable_clips(e.dataset, e.headline, e.exclusions,
                                  written_to=write_failed(cache_root, e.exclusions)) from None
    reused = not rebuild and is_built(cache_folder(manifest, proto, cache_root), log=lambda _: None)
    path = build_cache(manifest, proto, cache_root, workers=workers, rebuild=rebuild, progress=progress)
    try:
        cache = load_cache(path)
    except DamagedCache as exc:  # derived data: build it again, saying which file was damaged
        print(f"note: {exc}; building the cache again")
        cache = load_cache(build_cache(manifest, proto, cache_root, workers=workers, rebuild=True,
                                       progress=progress))
    if reused and progress:
        print_report(path, full=False)
    return cache
