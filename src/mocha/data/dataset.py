"""Loading a dataset and its episodes: the one entry point that knows every layout (ours and the paper's).

It sits above `schema` (our YAML), `paper` (the processed paper layouts), `records` and `episodes`, so none of
those needs to import another lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mocha.data.episodes import (
    Episode,
    draw_episodes,
    episode_split,
    read_episode_file,
    validate_episodes,
)
from mocha.data.paper import load_paper_dataset, paper_episodes
from mocha.data.records import ImageRecord, read_split
from mocha.data.schema import DatasetSpec, EpisodeSource, parse_dataset, read_yaml
from mocha.errors import DataError

PAPER_KEYS = ("coarse_names", "fine_names", "idmap")


def load_dataset(path: str | Path) -> DatasetSpec:
    """Read our dataset YAML or a paper-dataset YAML (dispatch on its keys); a folder holding one YAML works too."""
    path = Path(path).resolve()
    if path.is_dir():
        found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if len(found) != 1:
            what = ", ".join(p.name for p in found) if found else "none"
            raise DataError(f"{path}: expected exactly one dataset YAML in the folder (found {what})")
        path = found[0]
    data = read_yaml(path)
    if any(k in data for k in PAPER_KEYS):
        return load_paper_dataset(path, data)
    return parse_dataset(path, data)


def load_episodes(
    spec: DatasetSpec,
    shots: int,
    n: int = 100,
    seed: int = 0,
    split: str | None = None,
    records: Sequence[ImageRecord] | None = None,
) -> tuple[str, list[Episode]]:
    """(split name, its first `n` episodes for `shots`). Episode indices refer to `read_split(spec, split)`.

    The YAML's source for (split, shots) is used when there is one: a file (its first n episodes) or a draw
    (at most its `count`, seed = its seed + `seed`); otherwise n episodes are drawn with `seed`. Pass the
    split's `records` when already read (they must come from `read_split(spec, split)`).
    """
    split = episode_split(spec, split)
    if spec.split(split).label_ids != "instance":
        raise DataError(f"{spec.path}: split {split!r} has coarse labels; episodes need instance labels")
    if records is None:
        records = read_split(spec, split)
    src: EpisodeSource | None = spec.episodes.get(split, {}).get(shots)
    if src is not None and src.dialect != "mocha":
        episodes = paper_episodes(spec, src, records, n, seed)
        validate_episodes(episodes, records, spec, None, str(src.file))
        return split, episodes
    if src is not None and src.file is not None:
        episodes = read_episode_file(src.file, records, spec.split(split).images, shots, split)[:n]
        source = str(src.file)
    else:
        count, base = (n, 0) if src is None else (min(n, src.count), src.seed)
        try:
            episodes = draw_episodes(records, shots, count, base + seed)
        except DataError as exc:
            raise DataError(f"{spec.path}: split {split!r}: {exc}") from None
        source = f"{spec.path} ({split}, {shots}-shot draw)"
    validate_episodes(episodes, records, spec, shots, source)
    return split, episodes
