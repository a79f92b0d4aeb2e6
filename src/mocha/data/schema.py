"""Dataset YAML schema (docs/formats.md): coarse names, instances, splits and episode sources.

Two dialects load into one `DatasetSpec`: ours (`format: mocha-dataset/1`) and the processed paper
datasets (`coarse_names` / `fine_names` / `idmap`, see `mocha.data.paper`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mocha.errors import DataError

FORMAT = "mocha-dataset/1"


@dataclass(frozen=True)
class InstanceInfo:
    """A personal instance: its name and the id of its coarse class."""

    name: str
    coarse: int
    split: str = ""  # optional free-form tag (mochaworld: "base" / "personal")


@dataclass(frozen=True)
class SplitSpec:
    """One split: its images folder, the matching labels folder, and what the label class ids mean."""

    name: str
    images: Path
    labels: Path
    label_ids: Literal["coarse", "instance"]
    more: tuple[tuple[Path, Path], ...] = ()  # further (images, labels) folder pairs (POD's val folders)

    def folders(self) -> list[tuple[Path, Path]]:
        """Every (images, labels) folder pair of the split."""
        return [(self.images, self.labels), *self.more]


@dataclass(frozen=True)
class EpisodeSource:
    """Episodes of one split and shot count: from a JSON file, or a seeded draw of `count` episodes."""

    split: str
    shots: int
    file: Path | None = None
    seed: int = 0
    count: int = 100
    dialect: str = "mocha"  # "mocha" (ours) | "paper" (train/val episode file) | "pod" (class→images draw)


@dataclass
class DatasetSpec:
    """A loaded dataset YAML. `episodes`: split → shot count → EpisodeSource; `layout`: mocha or a paper layout."""

    path: Path
    root: Path
    names: list[str]
    instances: dict[int, InstanceInfo]
    splits: dict[str, SplitSpec]
    episodes: dict[str, dict[int, EpisodeSource]] = field(default_factory=dict)
    layout: str = "mocha"

    def coarse_of(self, instance_id: int) -> int:
        """Coarse id of an instance; DataError for an unknown id."""
        try:
            return self.instances[int(instance_id)].coarse
        except KeyError:
            raise DataError(f"{self.path}: unknown instance id {instance_id}") from None

    def instance_name(self, instance_id: int) -> str:
        """Name of an instance; DataError for an unknown id."""
        self.coarse_of(instance_id)
        return self.instances[int(instance_id)].name

    def split(self, name: str) -> SplitSpec:
        """The named split; DataError listing the splits when absent."""
        if name not in self.splits:
            raise DataError(f"{self.path}: no split {name!r} (splits: {', '.join(self.splits) or 'none'})")
        return self.splits[name]


def labels_dir_for(images: Path) -> Path:
    """ultralytics convention: replace the last `images` path component by `labels` (none: labels sit beside)."""
    parts = list(images.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images


def parse_names(raw: Any, path: Path, key: str) -> list[str]:
    if isinstance(raw, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError):
            raise DataError(f"{path}: `{key}` keys must be integer ids") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise DataError(f"{path}: `{key}` ids must be 0..{len(items) - 1}")
        return [v for _, v in items]
    if isinstance(raw, list) and raw:
        return [str(v) for v in raw]
    raise DataError(f"{path}: `{key}` must be a non-empty list or id→name mapping")


def _int(value: Any, message: str) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise DataError(message) from None


def _instances(raw: Any, names: list[str], path: Path) -> dict[int, InstanceInfo]:
    """`instances:` as {id: {name, coarse}} (or a list, index = id); coarse may be an id or a coarse name."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = dict(enumerate(raw))
    if not isinstance(raw, dict):
        raise DataError(f"{path}: `instances` must map instance id → {{name, coarse}}")
    out: dict[int, InstanceInfo] = {}
    for k, v in raw.items():
        iid = _int(k, f"{path}: instance key {k!r} must be an integer id")
        if iid < 0:
            raise DataError(f"{path}: instance id {iid} must be non-negative")
        if not isinstance(v, dict) or "coarse" not in v:
            raise DataError(f"{path}: instance {k} needs `coarse` (a coarse id or name)")
        c = v["coarse"]
        if isinstance(c, str) and c in names:
            coarse = names.index(c)
        else:
            coarse = _int(c, f"{path}: instance {k}: coarse {c!r} is neither a coarse id nor a name in `names`")
        if not 0 <= coarse < len(names):
            raise DataError(f"{path}: instance {k} has coarse id {coarse} outside names (0..{len(names) - 1})")
        out[iid] = InstanceInfo(str(v.get("name", f"instance-{iid}")), coarse, str(v.get("split", "")))
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset YAML not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError, RecursionError) as exc:
        raise DataError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping at the top level")
    return data


def parse_dataset(path: Path, data: dict[str, Any]) -> DatasetSpec:
    """Our dataset YAML (already read from `path`) → DatasetSpec; `mocha.data.dataset.load_dataset` dispatches here."""
    if data.get("format", FORMAT) != FORMAT:
        raise DataError(f"{path}: unsupported format {data.get('format')!r} (expected {FORMAT})")
    if not isinstance(data.get("root", "."), str):
        raise DataError(f"{path}: `root` must be a folder (a string)")
    root = (path.parent / data.get("root", ".")).resolve()
    names = parse_names(data.get("names"), path, "names")
    instances = _instances(data.get("instances"), names, path)
    splits: dict[str, SplitSpec] = {}
    raw_splits = data.get("splits") or {}
    if not isinstance(raw_splits, dict):
        raise DataError(f"{path}: `splits` must map split name → {{images: folder}}")
    for name, s in raw_splits.items():
        if isinstance(s, str):
            s = {"images": s}
        if not isinstance(s, dict) or not isinstance(s.get("images"), str):
            raise DataError(f"{path}: split {name!r} needs `images` (a folder)")
        if not isinstance(s.get("labels", ""), str):
            raise DataError(f"{path}: split {name!r}: `labels` must be a folder")
        kind = s.get("label_ids", "coarse")
        if kind not in ("coarse", "instance"):
            raise DataError(f"{path}: split {name!r}: label_ids must be 'coarse' or 'instance', not {kind!r}")
        if kind == "instance" and not instances:
            raise DataError(f"{path}: split {name!r} uses instance ids but the YAML lists no `instances`")
        images = (root / s["images"]).resolve()
        labels = (root / s["labels"]).resolve() if "labels" in s else labels_dir_for(images)
        splits[name] = SplitSpec(name, images, labels, kind)
    if not splits:
        raise DataError(f"{path}: no `splits` defined")
    episodes: dict[str, dict[int, EpisodeSource]] = {}
    raw_eps = data.get("episodes") or {}
    if not isinstance(raw_eps, dict):
        raise DataError(f"{path}: `episodes` must map split → {{shots: source}}")
    for split, per_shot in raw_eps.items():
        if split not in splits:
            raise DataError(f"{path}: episodes given for unknown split {split!r}")
        if splits[split].label_ids != "instance":
            raise DataError(f"{path}: episodes given for split {split!r}, which is not labelled with instance ids")
        episodes[split] = {}
        if not isinstance(per_shot or {}, dict):
            raise DataError(f"{path}: episodes[{split}] must map shot count → source")
        for shots, src in (per_shot or {}).items():
            k = _int(shots, f"{path}: episodes[{split}]: shot count {shots!r} must be a positive integer")
            where = f"{path}: episodes[{split}][{shots}]"
            if k < 1:
                raise DataError(f"{where}: shot count must be a positive integer")
            if isinstance(src, str):
                episodes[split][k] = EpisodeSource(split, k, file=(root / src).resolve())
            elif isinstance(src, dict) and set(src) <= {"seed", "count"}:
                seed = _int(src.get("seed", 0), f"{where}: seed must be an integer")
                count = _int(src.get("count", 100), f"{where}: count must be an integer")
                if count < 1:
                    raise DataError(f"{where}: count must be at least 1")
                episodes[split][k] = EpisodeSource(split, k, seed=seed, count=count)
            else:
                raise DataError(f"{where}: must be an episode file path or {{seed: int, count: int}}")
    return DatasetSpec(path, root, names, instances, splits, episodes)
