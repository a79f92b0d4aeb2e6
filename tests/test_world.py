"""mochaworld: deterministic tiny generation, schema, counts, disjoint splits, episodes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mocha.data.world import generate_world
from mocha.errors import ConfigError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(tmp_path_factory.mktemp("w") / "world", size="tiny", seed=3, progress=False)


def test_deterministic(world: Path, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", size="tiny", seed=3, progress=False)
    assert _files(world.parent) == _files(again.parent)
    other = generate_world(tmp_path / "other", size="tiny", seed=4, progress=False)
    assert _files(world.parent) != _files(other.parent)


def test_structure_counts_boxes(world: Path) -> None:
    doc = yaml.safe_load(world.read_text())
    assert doc["format"] == "mocha-dataset/1" and doc["names"][:2] == ["mug", "bottle"]
    insts = {int(k): v for k, v in doc["instances"].items()}
    base = {k for k, v in insts.items() if v["split"] == "base"}
    personal = {k for k, v in insts.items() if v["split"] == "personal"}
    assert base and personal and not base & personal
    side = json.loads((world.parent / "base/train/instances.json").read_text())
    seen_base = set()
    for split, ids in (("base/train", "coarse"), ("base/val", "coarse"), ("personal", "instance")):
        imgs = sorted((world.parent / split / "images").glob("*.jpg"))
        assert imgs
        for img in imgs:
            rows = [r.split() for r in (world.parent / split / "labels" / f"{img.stem}.txt").read_text().splitlines()]
            assert 1 <= len(rows) <= 4
            for r in rows:
                c, box = int(r[0]), [float(v) for v in r[1:]]
                assert all(0 <= v <= 1 for v in box) and box[2] > 0.05 and box[3] > 0.05
                assert box[0] - box[2] / 2 >= -1e-6 and box[0] + box[2] / 2 <= 1 + 1e-6
                if ids == "coarse":
                    assert 0 <= c < len(doc["names"])
                else:
                    assert c in personal
            if split == "base/train":
                assert len(side[img.name]) == len(rows)
                assert [insts[i]["coarse"] for i in side[img.name]] == [int(r[0]) for r in rows]
                seen_base.update(side[img.name])
    assert seen_base <= base


def test_episodes_valid(world: Path) -> None:
    doc = yaml.safe_load(world.read_text())
    img_dir = world.parent / doc["splits"]["personal"]["images"]
    personal = {str(k) for k, v in doc["instances"].items() if v["split"] == "personal"}
    all_files = {p.name for p in img_dir.glob("*.jpg")}
    for shots, rel in doc["episodes"]["personal"].items():
        ep = json.loads((world.parent / rel).read_text())
        assert ep["shots"] == int(shots) and len(ep["episodes"]) == 10
        for e in ep["episodes"]:
            assert set(e["support"]) == personal
            used = set()
            for iid, files in e["support"].items():
                assert len(files) == int(shots)
                for f in files:
                    labels = (img_dir.parent / "labels" / (Path(f).stem + ".txt")).read_text().split()
                    assert iid in labels[0::5]
                used.update(files)
            assert set(e["query"]) == all_files - used and e["query"]


def test_loads_with_schema_reader(world: Path) -> None:
    from mocha.data.dataset import load_dataset
    from mocha.data.records import read_split

    spec = load_dataset(world)
    for split in ("base_train", "base_val", "personal"):
        records = read_split(spec, split)
        assert records and all(len(r.boxes) >= 1 for r in records)


def test_bad_input(world: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not empty"):
        generate_world(world.parent, size="tiny", progress=False)
    with pytest.raises(ConfigError, match="unknown world size"):
        generate_world(tmp_path / "x", size="huge")
    from mocha.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["world", "generate", "--out", str(tmp_path / "y"), "--size", "huge"])
    assert exc.value.code == 2 and not (tmp_path / "y").exists()
    # --overwrite replaces a non-empty folder atomically
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "junk.txt").write_text("x")
    generate_world(tmp_path / "z", size="tiny", overwrite=True, progress=False)
    assert not (tmp_path / "z" / "junk.txt").exists() and (tmp_path / "z" / "mochaworld.yaml").is_file()
