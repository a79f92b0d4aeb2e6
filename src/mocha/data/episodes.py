"""Few-shot episodes: K support images per instance; the query set is the split's other images.

An Episode refers to images by their index in `read_split(spec, split)` (sorted by path). Sources, per
split and shot count (docs/formats.md): our episode JSON, a seeded draw, or a paper layout's episode /
class→images file (mocha.data.paper).

Seeded draw, episode e: `rng = np.random.default_rng(seed + e)`; for each instance in increasing id order,
`rng.choice(images containing it, size=shots, replace=False)` (sorted); query = every image of the split
not used as support by any instance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.data.records import ImageRecord
from mocha.data.schema import DatasetSpec
from mocha.errors import DataError


@dataclass
class Episode:
    """support: instance id → record indices of its support images; query: record indices."""

    index: int
    support: dict[int, list[int]]
    query: list[int]


def images_by_instance(records: Sequence[ImageRecord]) -> dict[int, list[int]]:
    """Instance id → indices of the records whose labels contain it (increasing)."""
    out: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        for inst in np.unique(r.instance[r.instance >= 0]).tolist():
            out.setdefault(int(inst), []).append(i)
    return dict(sorted(out.items()))


def draw_episodes(records: Sequence[ImageRecord], shots: int, count: int = 100, seed: int = 0) -> list[Episode]:
    """Seeded draw of `count` episodes (see the module docstring for the exact procedure)."""
    if shots < 1 or count < 1:
        raise DataError(f"episodes need shots >= 1 and count >= 1 (got shots={shots}, count={count})")
    by_inst = images_by_instance(records)
    if not by_inst:
        raise DataError("cannot draw episodes: the split has no instance labels")
    for inst, imgs in by_inst.items():
        if len(imgs) < shots:
            raise DataError(
                f"instance {inst}: {shots}-shot episodes need at least {shots} images containing it, "
                f"the split has {len(imgs)}"
            )
    episodes = []
    for e in range(count):
        rng = np.random.default_rng(seed + e)
        support = {inst: sorted(rng.choice(imgs, size=shots, replace=False).tolist()) for inst, imgs in by_inst.items()}
        used = {i for v in support.values() for i in v}
        episodes.append(Episode(e, support, [i for i in range(len(records)) if i not in used]))
    return episodes


class ImageIndex:
    """Find a split's record by a path relative to its images folder, or by a file name when unambiguous."""

    def __init__(self, records: Sequence[ImageRecord], roots: Sequence[Path]) -> None:
        self.exact: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        for i, r in enumerate(records):
            for root in roots:
                if Path(r.image).is_relative_to(root):
                    self.exact.setdefault(Path(r.image).relative_to(root).as_posix(), i)
            name = Path(r.image).name
            self.by_name[name] = -1 if name in self.by_name else i  # -1: two images share the name

    def find(self, name: str) -> int | None:
        """Record index for `name`; None when absent; DataError when only an ambiguous file name matches."""
        key = Path(str(name)).as_posix()
        if key in self.exact:
            return self.exact[key]
        i = self.by_name.get(Path(key).name)
        if i == -1:
            raise DataError(f"image name {name!r} is ambiguous (several images of the split have it)")
        return i


def read_episode_file(
    path: Path, records: Sequence[ImageRecord], images_root: Path, shots: int | None = None, split: str | None = None
) -> list[Episode]:
    """Our episode JSON → Episodes; every problem is a DataError naming the file and episode."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise DataError(f"{path}: expected {{'split': ..., 'shots': ..., 'episodes': [...]}}")
    if split is not None and data.get("split", split) != split:
        raise DataError(f"{path}: episodes are for split {data['split']!r}, not {split!r}")
    try:
        file_shots = int(data.get("shots", shots)) if shots is not None else None
    except (TypeError, ValueError):
        raise DataError(f"{path}: `shots` must be an integer, not {data.get('shots')!r}") from None
    if shots is not None and file_shots != shots:
        raise DataError(f"{path}: episodes are {data['shots']}-shot, not {shots}-shot")
    index = ImageIndex(records, [images_root])
    episodes = []
    for e, ep in enumerate(data["episodes"]):
        where = f"{path}: episode {e}"
        if not isinstance(ep, dict) or not isinstance(ep.get("support"), dict) or not isinstance(ep.get("query"), list):
            raise DataError(f"{where}: needs 'support' {{instance id: [images]}} and 'query' [images]")
        support: dict[int, list[int]] = {}
        for inst, files in ep["support"].items():
            try:
                iid = int(inst)
            except ValueError:
                raise DataError(f"{where}: support key {inst!r} is not an instance id") from None
            if not isinstance(files, list) or not all(isinstance(f, str) for f in [*files, *ep["query"]]):
                raise DataError(f"{where}: support and query entries must be lists of image paths")
            support[iid] = sorted(find_image(index, f, where) for f in files)
        query = [find_image(index, f, where) for f in ep["query"]]
        clash = sorted({i for v in support.values() for i in v} & set(query))
        if clash:
            raise DataError(f"{where}: image {records[clash[0]].image.name} is both a support and a query image")
        episodes.append(Episode(e, support, query))
    if not episodes:
        raise DataError(f"{path}: episode file lists no episodes")
    return episodes


def write_episode_file(
    path: Path, split: str, shots: int, episodes: Sequence[Episode], records: Sequence[ImageRecord], images_root: Path
) -> Path:
    """Freeze episodes into our JSON format (paths relative to the split's images folder), atomically."""
    from mocha.io import write_json

    def rel(i: int) -> str:
        return Path(records[i].image).relative_to(images_root).as_posix()

    doc: dict[str, Any] = {
        "split": split,
        "shots": shots,
        "episodes": [
            {
                "support": {str(k): [rel(i) for i in v] for k, v in ep.support.items()},
                "query": [rel(i) for i in ep.query],
            }
            for ep in episodes
        ],
    }
    write_json(path, doc)
    return Path(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: episode file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable episode file ({exc})") from None


def find_image(index: ImageIndex, name: str, where: str, kind: str = "") -> int:
    try:
        i = index.find(name)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    if i is None:
        raise DataError(f"{where} names {kind}image {name!r}, which is not in the split")
    return i


def validate_episodes(
    episodes: Sequence[Episode], records: Sequence[ImageRecord], spec: DatasetSpec, shots: int | None, source: str
) -> None:
    """Every support image holds a box of its instance; known instances; `shots` images each (when given)."""
    for ep in episodes:
        where = f"{source}: episode {ep.index}"
        if not ep.support:
            raise DataError(f"{where}: no support images")
        for inst, idx in ep.support.items():
            if inst not in spec.instances:
                raise DataError(f"{where}: unknown instance {inst}")
            if shots is not None and len(idx) != shots:
                raise DataError(f"{where}: instance {inst} has {len(idx)} support images, {shots}-shot needs {shots}")
            for i in idx:
                if not (records[i].instance == inst).any():
                    raise DataError(f"{where}: instance {inst} has no support box in {records[i].image}")


def episode_split(spec: DatasetSpec, split: str | None = None) -> str:
    """The split episodes come from: `split`, else the first with episode sources, else the first instance split."""
    if split is not None:
        spec.split(split)
        return split
    if spec.episodes:
        return next(iter(spec.episodes))
    found = next((s for s, sp in spec.splits.items() if sp.label_ids == "instance"), None)
    if found is None:
        raise DataError(f"{spec.path}: no split with instance labels to draw episodes from")
    return found
