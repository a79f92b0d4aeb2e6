"""Readers for the processed paper benchmarks: PerSeg, CORe50, iCubWorld, POD (docs/formats.md).

Their YAML holds `coarse_names`, `fine_names` and an instance→coarse map `idmap` (keys and values may be
ids or names, as strings or ints; name lists may be lists or {id: name} dicts); YOLO label lines carry
instance ("fine") ids. A folder holds images and labels either as `images/` + `labels/` or side by side.

- perseg:           one folder (the YAML's) holds support and query images; episode JSON files name them.
- core50/icubworld: `train/` holds support and query images; episode JSON files name them.
- pod:              `train/` (support) plus `val*/` folders (query); a class→images JSON lists each instance's
                    train images, from which `shots` per instance are drawn: episode e calls
                    `random.seed(seed + e)` then `random.sample(files, shots)` per instance in increasing id.

The layout is the `layout:` key when given, else detected: `train/` with `val*/` siblings → pod, `train/`
alone → core50 (iCubWorld reads identically), otherwise perseg. Folder keys `train:` / `val:` override the
defaults. All become one DatasetSpec: split `personal` (the episode images; for POD train + val folders)
plus, for POD, `train` and `val`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mocha.data.episodes import Episode, ImageIndex, find_image, read_json
from mocha.data.records import ImageRecord
from mocha.data.schema import DatasetSpec, EpisodeSource, InstanceInfo, SplitSpec, labels_dir_for, parse_names
from mocha.errors import DataError

LAYOUTS = ("perseg", "core50", "icubworld", "pod")
PAPER_KEYS = ("coarse_names", "fine_names", "idmap")
SPLIT = "personal"


def _resolve(value: Any, names: list[str], what: str, path: Path) -> int:
    s = str(value).strip()
    if re.fullmatch(r"\d+", s) and int(s) < len(names):
        return int(s)
    if s in names:
        return names.index(s)
    raise DataError(f"{path}: idmap {what} {value!r} is neither an id nor a name in `{what}_names`")


def detect_layout(root: Path, data: dict[str, Any], path: Path) -> str:
    """The `layout:` hint, else the folder structure (see the module docstring)."""
    if "layout" in data:
        layout = str(data["layout"]).lower()
        if layout not in LAYOUTS:
            raise DataError(f"{path}: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
        return layout
    if not root.is_dir():
        raise DataError(f"{path}: dataset folder {root} does not exist")
    has_train = (root / "train").is_dir()
    if has_train and any(p.is_dir() and p.name.startswith("val") for p in root.iterdir()):
        return "pod"
    return "core50" if has_train else "perseg"


def _folder(root: Path, name: str, path: Path) -> tuple[Path, Path]:
    """(images, labels) of a folder: `images/` + `labels/` inside it, or both side by side."""
    d = (root / name).resolve()
    if not d.is_dir():
        raise DataError(f"{path}: folder {d} does not exist")
    if (d / "images").is_dir():
        return d / "images", labels_dir_for(d / "images")
    return d, d


def _folder_names(value: Any, default: list[str], key: str, path: Path) -> list[str]:
    if value is None:
        return default
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise DataError(f"{path}: `{key}` must be a folder or a list of folders")


def _episode_files(root: Path, data: dict[str, Any], path: Path) -> dict[int, Path]:
    given = data.get("episodes")
    if isinstance(given, dict):
        return {int(k): (root / str(v)).resolve() for k, v in given.items()}
    if given is not None and not isinstance(given, str):
        raise DataError(f"{path}: `episodes` must be a file or {{shots: file}}")
    files = [(root / given).resolve()] if isinstance(given, str) else sorted(root.glob("*episode*.json"))
    out: dict[int, Path] = {}
    for f in files:
        m = re.search(r"(\d+)[-_ ]?shots?", f.name, re.I)
        k = int(m.group(1)) if m else 1
        if k in out:
            raise DataError(f"{path}: two {k}-shot episode files ({out[k].name}, {f.name}); list them in `episodes:`")
        out[k] = f
    return out


def load_paper_dataset(path: Path, data: dict[str, Any]) -> DatasetSpec:
    """DatasetSpec for a paper layout (episode images in split `personal`)."""
    root = (path.parent / str(data.get("root", data.get("path", ".")))).resolve()
    for key in PAPER_KEYS:
        if key not in data:
            raise DataError(f"{path}: paper-dataset YAML needs `{key}`")
    coarse_names = parse_names(data["coarse_names"], path, "coarse_names")
    fine_names = parse_names(data["fine_names"], path, "fine_names")
    if not isinstance(data["idmap"], dict):
        raise DataError(f"{path}: `idmap` must map instance → coarse class")
    instances: dict[int, InstanceInfo] = {}
    for k, v in data["idmap"].items():
        fid = _resolve(k, fine_names, "fine", path)
        instances[fid] = InstanceInfo(fine_names[fid], _resolve(v, coarse_names, "coarse", path))
    missing = [n for i, n in enumerate(fine_names) if i not in instances]
    if missing:
        raise DataError(f"{path}: idmap has no coarse class for instance(s) {', '.join(missing[:5])}")
    layout = detect_layout(root, data, path)
    episodes: dict[int, EpisodeSource] = {}
    if layout == "pod":
        train = _folder(root, _folder_names(data.get("train"), ["train"], "train", path)[0], path)
        val_default = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("val"))
        vals = [_folder(root, v, path) for v in _folder_names(data.get("val"), val_default, "val", path)]
        if not vals:
            raise DataError(f"{path}: POD layout needs query folders (val*/ beside train/, or `val:`)")
        splits = {
            SPLIT: SplitSpec(SPLIT, *train, "instance", more=tuple(vals)),
            "train": SplitSpec("train", *train, "instance"),
            "val": SplitSpec("val", *vals[0], "instance", more=tuple(vals[1:])),
        }
        class_json = _class_json(root, data, path)
        shots = data.get("shots", [1, 5])
        for k in sorted({int(s) for s in (shots if isinstance(shots, list) else [shots])}):
            episodes[k] = EpisodeSource(SPLIT, k, file=class_json, dialect="pod")
    else:
        default = "train" if layout in ("core50", "icubworld") else "."
        folder = _folder(root, _folder_names(data.get("train"), [default], "train", path)[0], path)
        splits = {SPLIT: SplitSpec(SPLIT, *folder, "instance")}
        for k, f in _episode_files(root, data, path).items():
            episodes[k] = EpisodeSource(SPLIT, k, file=f, dialect="paper")
    return DatasetSpec(path, root, coarse_names, instances, splits, {SPLIT: episodes}, layout=layout)


def _class_json(root: Path, data: dict[str, Any], path: Path) -> Path:
    if "class_images" in data:
        return (root / str(data["class_images"])).resolve()
    found = sorted(p for p in root.glob("*.json") if "class" in p.name.lower())
    if not found:
        raise DataError(f"{root}: POD layout needs a class→images JSON (name it with `class_images:` in {path.name})")
    return found[0]


def paper_episodes(
    spec: DatasetSpec, src: EpisodeSource, records: Sequence[ImageRecord], n: int, seed: int = 0
) -> list[Episode]:
    """Episodes of a paper layout: from its episode file, or POD's seeded draw from the class→images JSON."""
    assert src.file is not None
    data = read_json(src.file)
    if src.dialect == "pod":
        return _pod_episodes(spec, src, data, records, n, seed)
    if isinstance(data, dict):
        try:
            keys = sorted(data, key=int)
        except ValueError:
            raise DataError(f"{src.file}: episodes must be a list or a dict keyed by episode index") from None
        items = [data[k] for k in keys]
    elif isinstance(data, list):
        items = data
    else:
        raise DataError(f"{src.file}: episodes must be a list or a dict keyed by episode index")
    index = ImageIndex(records, [spec.splits[SPLIT].images])
    episodes = []
    for e, ep in enumerate(items[:n]):
        where = f"{src.file}: episode {e}"
        if not isinstance(ep, dict) or not isinstance(ep.get("train"), list) or not isinstance(ep.get("val"), list):
            raise DataError(f"{where}: needs 'train' (support) and 'val' (query) lists of image names")
        support = _support(records, [find_image(index, f, where, "support ") for f in ep["train"]])
        episodes.append(Episode(e, support, [find_image(index, f, where, "query ") for f in ep["val"]]))
    if not episodes:
        raise DataError(f"{src.file}: episode file lists no episodes")
    return episodes


def _support(records: Sequence[ImageRecord], idx: list[int]) -> dict[int, list[int]]:
    """Each support image serves every instance it shows."""
    support: dict[int, list[int]] = {}
    for i in idx:
        for inst in sorted({int(v) for v in records[i].instance}):
            support.setdefault(inst, []).append(i)
    return dict(sorted(support.items()))


def _pod_episodes(
    spec: DatasetSpec, src: EpisodeSource, data: Any, records: Sequence[ImageRecord], n: int, seed: int
) -> list[Episode]:
    if not isinstance(data, dict):
        raise DataError(f"{src.file}: expected {{instance: [train image names]}}")
    train_dir = spec.splits["train"].images
    train_idx = [i for i, r in enumerate(records) if Path(r.image).is_relative_to(train_dir)]
    index = ImageIndex([records[i] for i in train_idx], [train_dir])
    query = [i for i, r in enumerate(records) if not Path(r.image).is_relative_to(train_dir)]
    by_name = {info.name: iid for iid, info in spec.instances.items()}
    per_class: dict[int, list[str]] = {}
    for k, files in data.items():
        iid = by_name.get(str(k), int(k) if str(k).isdigit() else None)
        if iid is None or iid not in spec.instances:
            raise DataError(f"{src.file}: unknown instance {k!r}")
        if not isinstance(files, list) or len(files) < src.shots:
            count = len(files) if isinstance(files, list) else 0
            need = src.shots
            raise DataError(f"{src.file}: instance {k} lists {count} images, {need}-shot episodes need {need}")
        per_class[iid] = [str(f) for f in files]
    episodes = []
    for e in range(min(n, src.count)):
        rng = random.Random(seed + e)  # = the paper's random.seed(e) + random.sample, without touching the global RNG
        support: dict[int, list[int]] = {}
        for iid in sorted(per_class):
            names = rng.sample(per_class[iid], src.shots)
            where = f"{src.file}: episode {e}"
            support[iid] = sorted(train_idx[find_image(index, f, where, "support ")] for f in names)
        episodes.append(Episode(e, support, query))
    return episodes
