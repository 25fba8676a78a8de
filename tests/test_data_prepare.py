"""prepare('embedded'): generation + cache in one call, reuse, folder naming, ground-truth flags, batches."""

from __future__ import annotations

import numpy as np

from mmgap.config import get_preset
from mmgap.data import TensorBatcher, prepare
from mmgap.data.embedded import build_manifest
from mmgap.data.prepare import embedded_root


def test_prepare_embedded_end_to_end(tmp_path):
    preset = get_preset("smoke", n_clips=40)
    c = prepare("embedded", data_dir=tmp_path, preset=preset, workers=0, progress=False)
    root = c.path.parent.parent
    assert root.parent == tmp_path and root.name.startswith("smoke-") and root.name.endswith("-seed0")
    assert c.audio.shape == (40, 40, 51) and c.audio.dtype == np.float16  # 40 mel bins, 1 s at a 20 ms hop
    assert c.frames.shape == (40, 2, 20, 20, 3) and c.num_classes == 10
    # 4 clips per class: round(0.2 * 4) = 1 test each -> 10 test; val = round(0.1 * 30) = 3 carved from train
    assert c.counts() == {"train": 27, "val": 3, "test": 10}
    flags = {r.clip_id: r.imbalanced for r in build_manifest(root).rows}
    assert c.imbalanced.dtype == bool and c.imbalanced.tolist() == [flags[k] for k in c.clip_ids]
    assert c.protocol["audio"]["features"] == "logmel"
    again = prepare("embedded", data_dir=tmp_path, preset=preset, workers=0, progress=False)
    assert again.path == c.path and np.array_equal(again.audio, c.audio)
    x = next(iter(TensorBatcher(c, "train", 8, True, num_frames=2, image_size=16)))
    assert x["frames"].shape == (8, 2, 3, 16, 16) and x["audio"].shape == (8, 1, 40, 51)


def test_embedded_folder_names():
    assert embedded_root("somewhere", get_preset("demo"), 0).name == "demo-seed0"
    assert embedded_root("somewhere", get_preset("demo"), 2).name == "demo-seed2"
    a = embedded_root("x", get_preset("demo", n_clips=100), 0).name
    b = embedded_root("x", get_preset("demo", n_clips=200), 0).name
    assert a != b and a.startswith("demo-") and a.endswith("-seed0")
