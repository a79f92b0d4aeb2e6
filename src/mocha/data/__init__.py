"""mocha.data — YOLO-format datasets with coarse + instance labels (docs/formats.md, docs/architecture.md).

Public face:
- `load_dataset(path) -> DatasetSpec` (our YAML or a paper layout), `InstanceInfo`, `SplitSpec`, `EpisodeSource`;
- `read_split(spec, split, skip_bad=False, report=None, verify_images=False) -> list[ImageRecord]`
  (a `Records` list with `.skipped`), `SkipReport`;
- `load_image`, `letterbox`, `Letterbox`; `DetectionDataset`, `collate` (torch, imported on first use);
- `Episode`, `load_episodes(spec, shots, n=100, seed=0) -> (split, episodes)`, `write_episode_file`.
"""

from __future__ import annotations

from typing import Any

from mocha.data.dataset import load_dataset, load_episodes
from mocha.data.episodes import Episode, write_episode_file
from mocha.data.images import Letterbox, letterbox, load_image
from mocha.data.records import ImageRecord, Records, SkipReport, read_split
from mocha.data.schema import DatasetSpec, EpisodeSource, InstanceInfo, SplitSpec

__all__ = [
    "DatasetSpec",
    "DetectionDataset",
    "Episode",
    "EpisodeSource",
    "ImageRecord",
    "InstanceInfo",
    "Letterbox",
    "Records",
    "SkipReport",
    "SplitSpec",
    "collate",
    "letterbox",
    "load_dataset",
    "load_episodes",
    "load_image",
    "read_split",
    "write_episode_file",
]


def __getattr__(name: str) -> Any:
    if name in ("DetectionDataset", "collate"):  # torch is heavy: import it only when the loader is used
        from mocha.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'mocha.data' has no attribute {name!r}")
