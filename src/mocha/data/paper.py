"""Readers for the processed paper benchmarks: PerSeg, CORe50, iCubWorld, POD.

Their YAML holds `coarse_names`, `fine_names` and an instance→coarse map `idmap` (keys and values may be
ids or names, as strings or ints); YOLO label lines carry instance ("fine") ids. Layouts:

- perseg:   one folder (`images/`, `labels/`); episode JSON files name support ('train') and query ('val')
            images of that same folder.
- core50, icubworld: a `train/` folder holds both support and query images named by the episode files.
- pod:      `train/` plus several `val*/` folders; a class→images JSON lists each instance's train images,
            from which K support images per instance are drawn with `random.seed(episode)`; query = val*.

The layout comes from a `layout:` key, else from the folder structure. Episode files come from an
`episodes:` key ({shots: file}) or are found as `*episode*.json` beside the YAML.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mocha.data.episodes import Episode
from mocha.data.records import ImageRecord
from mocha.data.schema import DatasetSpec, EpisodeSource, InstanceInfo, SplitSpec, _names, labels_dir_for
from mocha.errors import DataError

LAYOUTS = ("perseg", "core50", "icubworld", "pod")


def _resolve(value: Any, names: list[str], what: str, path: Path) -> int:
    s = str(value).strip()
    if re.fullmatch(r"-?\d+", s):
        i = int(s)
        if 0 <= i < len(names):
            return i
    elif s in names:
        return names.index(s)
    raise DataError(f"{path}: idmap {what} {value!r} is neither an id nor a name in {what}_names")


def _detect_layout(root: Path, data: dict[str, Any]) -> str:
    if "layout" in data:
        layout = str(data["layout"]).lower()
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
        return layout
    if (root / "train").is_dir() and any(p.is_dir() and p.name.startswith("val") for p in root.iterdir()):
        return "pod"
    if (root / "train").is_dir():
        return "core50"
    return "perseg"


def _folder(root: Path, name: str) -> tuple[Path, Path]:
    d = root / name
    images = d / "images" if (d / "images").is_dir() else d
    labels = labels_dir_for(images) if images != d else d
    return images, labels


def _episode_files(root: Path, data: dict[str, Any], path: Path) -> dict[int, Path]:
    given = data.get("episodes")
    if isinstance(given, dict):
        return {int(k): (root / str(v)).resolve() for k, v in given.items()}
    if isinstance(given, str):
        files = [(root / given).resolve()]
    else:
        files = sorted(p for p in root.glob("*.json") if "episode" in p.name.lower())
    out: dict[int, Path] = {}
    for f in files:
        m = re.search(r"(\d+)[-_ ]?shot", f.name)
        out[int(m.group(1)) if m else 1] = f
    return out


def load_paper_dataset(path: Path, data: dict[str, Any]) -> DatasetSpec:
    """DatasetSpec for a paper layout; the episode split is called `episodes` (support + query images)."""
    root = (path.parent / str(data.get("path", data.get("root", ".")))).resolve()
    for key in ("coarse_names", "fine_names", "idmap"):
        if key not in data:
            raise DataError(f"{path}: paper-dataset YAML needs `{key}`")
    coarse_names = _names(data["coarse_names"], path, "coarse_names")
    fine_names = _names(data["fine_names"], path, "fine_names")
    if not isinstance(data["idmap"], dict):
        raise DataError(f"{path}: `idmap` must map instance → coarse")
    instances: dict[int, InstanceInfo] = {}
    for k, v in data["idmap"].items():
        fid = _resolve(k, fine_names, "fine", path)
        instances[fid] = InstanceInfo(fine_names[fid], _resolve(v, coarse_names, "coarse", path))
    missing = [n for i, n in enumerate(fine_names) if i not in instances]
    if missing:
        raise DataError(f"{path}: idmap has no coarse class for instance(s) {', '.join(missing[:5])}")
    layout = _detect_layout(root, data)
    episodes: dict[str, dict[int, EpisodeSource]] = {"episodes": {}}
    if layout == "pod":
        train = _folder(root, "train")
        vals = [_folder(root, p.name) for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith("val")]
        splits = {
            "train": SplitSpec("train", *train, "instance"),
            "episodes": SplitSpec("episodes", train[0], train[1], "instance", more=tuple(vals)),
        }
        class_json = root / str(data.get("class_images", "train_classes.json"))
        if not class_json.exists():
            found = sorted(p for p in root.glob("*.json") if "class" in p.name.lower())
            if not found:
                raise DataError(f"{root}: POD layout needs a class→images JSON (`class_images:` in {path.name})")
            class_json = found[0]
        for k in sorted({int(s) for s in data.get("shots", [1, 5])}):
            episodes["episodes"][k] = EpisodeSource("episodes", k, file=class_json, dialect="pod", count=100)
    else:
        folder = _folder(root, "train") if layout != "perseg" else _folder(root, ".")
        splits = {"episodes": SplitSpec("episodes", *folder, "instance")}
        for shots, f in _episode_files(root, data, path).items():
            episodes["episodes"][shots] = EpisodeSource("episodes", shots, file=f, dialect="paper")
    return DatasetSpec(path, root, coarse_names, instances, splits, episodes, layout=layout)


def _by_name(records: Sequence[ImageRecord]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, r in enumerate(records):
        index.setdefault(Path(r.image).name, i)
        index.setdefault(Path(r.image).stem, i)
    return index


def _support_from_images(index: dict[str, int], records: Sequence[ImageRecord], names: list[str], src: Path, e: int):
    support: dict[int, list[int]] = {}
    for name in names:
        key = Path(str(name)).name
        if key not in index and Path(key).stem not in index:
            raise DataError(f"{src}: episode {e} names support image {name!r} which does not exist")
        i = index.get(key, index.get(Path(key).stem))
        for inst in sorted({int(v) for v in records[i].instance}):
            support.setdefault(inst, []).append(i)
    return support


def paper_episodes(spec: DatasetSpec, src: EpisodeSource, records: Sequence[ImageRecord], n: int) -> list[Episode]:
    """Episodes of a paper layout: from its episode file, or POD's seeded draw from the class→images JSON."""
    index = _by_name(records)
    assert src.file is not None
    try:
        data = json.loads(src.file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{src.file}: unreadable episode/class file ({exc})") from None
    episodes: list[Episode] = []
    if src.dialect == "pod":
        train_dir = spec.splits["train"].images
        query = [i for i, r in enumerate(records) if not Path(r.image).is_relative_to(train_dir)]
        fine = {info.name: iid for iid, info in spec.instances.items()}
        per_class: dict[int, list[str]] = {}
        for k, files in data.items():
            iid = fine.get(str(k), int(k) if str(k).isdigit() else None)
            if iid is None or iid not in spec.instances:
                raise DataError(f"{src.file}: unknown instance {k!r}")
            per_class[iid] = [str(f) for f in files]
        for e in range(n):
            random.seed(e)
            names: list[str] = []
            for iid in sorted(per_class):
                if len(per_class[iid]) < src.shots:
                    raise DataError(
                        f"{src.file}: instance {iid} has {len(per_class[iid])} images, {src.shots} shots asked"
                    )
                names.extend(random.sample(per_class[iid], src.shots))
            episodes.append(Episode(e, _support_from_images(index, records, names, src.file, e), query))
        return episodes
    items = data if isinstance(data, list) else [data[k] for k in sorted(data, key=lambda x: int(x))]
    for e, ep in enumerate(items[:n]):
        if not isinstance(ep, dict) or "train" not in ep or "val" not in ep:
            raise DataError(f"{src.file}: episode {e} needs 'train' (support) and 'val' (query) lists")
        support = _support_from_images(index, records, ep["train"], src.file, e)
        query = []
        for name in ep["val"]:
            key = Path(str(name)).name
            if key not in index:
                raise DataError(f"{src.file}: episode {e} names query image {name!r} which does not exist")
            query.append(index[key])
        episodes.append(Episode(e, support, query))
    return episodes
