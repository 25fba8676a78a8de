"""Data layer: the embedded dataset generator, real-dataset manifests, decoding, feature cache and batching.

`prepare(dataset, data_dir, preset, seed)` is the one call notebooks use; it returns a `FeatureCache`.
`TensorBatcher` (fast path) and `make_loader` (per-item DataLoader) turn a cache into training batches.
"""

from mmgap.data.cache import FeatureCache, build_cache, load_cache
from mmgap.data.dataset import AVDataset, TensorBatcher, make_loader
from mmgap.data.embedded import generate_embedded
from mmgap.data.manifest import DataError, Exclusion, Manifest, ManifestRow, NoUsableClips
from mmgap.data.prepare import DATASETS, prepare
from mmgap.data.protocols import (
    AVE,
    CREMA_D,
    GENERIC,
    KINETICS_SOUNDS,
    AudioProtocol,
    Protocol,
    VisualProtocol,
    embedded_protocol,
)

__all__ = [
    "AVE", "AVDataset", "AudioProtocol", "CREMA_D", "DATASETS", "DataError", "Exclusion", "FeatureCache", "GENERIC",
    "KINETICS_SOUNDS", "Manifest", "ManifestRow", "NoUsableClips", "Protocol", "TensorBatcher", "VisualProtocol",
    "build_cache", "embedded_protocol", "generate_embedded", "load_cache", "make_loader", "prepare",
]
