"""Few-shot episodes: K support images per instance; query = the split's other images.

Sources: our episode JSON, a seeded draw, or the paper datasets' episode files (see mocha.data.paper).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mocha.data.records import ImageRecord
from mocha.data.schema import DatasetSpec, EpisodeSource
from mocha.errors import DataError


@dataclass
class Episode:
    """support: instance id → record indices of its support images; query: record indices."""

    index: int
    support: dict[int, list[int]]
    query: list[int]


def images_by_instance(records: Sequence[ImageRecord]) -> dict[int, list[int]]:
    """Instance id → indices of the records whose labels contain it (sorted)."""
    out: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        for inst in sorted(set(int(v) for v in r.instance if v >= 0)):
            out.setdefault(inst, []).append(i)
    return out


def draw_episodes(records: Sequence[ImageRecord], shots: int, count: int = 100, seed: int = 0) -> list[Episode]:
    """Seeded draw: per episode and instance, `shots` images containing it; query = all images not drawn."""
    by_inst = images_by_instance(records)
    if not by_inst:
        raise DataError("cannot draw episodes: the split has no instance labels")
    for inst, imgs in by_inst.items():
        if len(imgs) < shots + 1:
            raise DataError(
                f"instance {inst}: {shots}-shot episodes need at least {shots + 1} images, it has {len(imgs)}"
            )
    episodes = []
    for e in range(count):
        rng = np.random.default_rng(seed + e)
        support = {
            inst: sorted(int(v) for v in rng.choice(imgs, size=shots, replace=False))
            for inst, imgs in sorted(by_inst.items())
        }
        used = {i for v in support.values() for i in v}
        episodes.append(Episode(e, support, [i for i in range(len(records)) if i not in used]))
    return episodes


def episodes_from_json(path: Path, records: Sequence[ImageRecord], images_root: Path) -> list[Episode]:
    """Read our episode JSON (support per instance id, query list; paths relative to the split images dir)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable episode file ({exc})") from None
    index = _name_index(records, images_root)
    episodes = []
    for e, ep in enumerate(data.get("episodes", [])):
        support = {}
        for inst, files in ep["support"].items():
            support[int(inst)] = [_lookup(index, f, path, e) for f in files]
        query = [_lookup(index, f, path, e) for f in ep["query"]]
        episodes.append(Episode(e, support, query))
    if not episodes:
        raise DataError(f"{path}: episode file lists no episodes")
    return episodes


def _name_index(records: Sequence[ImageRecord], images_root: Path) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, r in enumerate(records):
        if Path(r.image).is_relative_to(images_root):
            index[str(Path(r.image).relative_to(images_root))] = i
        index.setdefault(Path(r.image).name, i)
    return index


def _lookup(index: dict[str, int], name: str, path: Path, episode: int) -> int:
    if name not in index:
        raise DataError(f"{path}: episode {episode} names image {name!r} which is not in the split")
    return index[name]


def validate_episodes(episodes: Sequence[Episode], records: Sequence[ImageRecord], shots: int) -> None:
    """Each support image must contain its instance; each instance needs its shots."""
    for ep in episodes:
        for inst, idx in ep.support.items():
            if len(idx) < shots:
                raise DataError(f"episode {ep.index}: instance {inst} has {len(idx)} support images, {shots} needed")
            for i in idx:
                if inst not in set(int(v) for v in records[i].instance):
                    raise DataError(f"episode {ep.index}: instance {inst} has no support box in {records[i].image}")


def load_episodes(
    spec: DatasetSpec, shots: int, n: int = 100, seed: int = 0, split: str | None = None
) -> tuple[str, list[ImageRecord], list[Episode]]:
    """Episodes for `shots` on the dataset's episode split: (split name, its records, episodes[:n])."""
    from mocha.data.records import read_split

    split = split or (next(iter(spec.episodes)) if spec.episodes else None)
    if split is None:
        split = next((s for s, sp in spec.splits.items() if sp.label_ids == "instance"), None)
    if split is None:
        raise DataError(f"{spec.path}: no split with instance labels to draw episodes from")
    records = read_split(spec, split)
    src: EpisodeSource | None = spec.episodes.get(split, {}).get(shots)
    if src is not None and src.dialect != "mocha":
        from mocha.data.paper import paper_episodes

        episodes = paper_episodes(spec, src, records, n)
    elif src is not None and src.file is not None:
        episodes = episodes_from_json(src.file, records, spec.split(split).images)
    else:
        episodes = draw_episodes(records, shots, n, seed if src is None else src.seed)
    episodes = episodes[:n]
    validate_episodes(episodes, records, shots)
    return split, records, episodes
