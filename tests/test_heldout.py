"""The held-out world: disjoint photo sets, a personal-only world, and the demo refusing an overlapping one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mocha.data.world import generate_world, textures
from mocha.errors import ConfigError


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_photo_sets_are_disjoint_halves_and_the_default_is_unchanged() -> None:
    default, heldout = textures.photo_set("default"), textures.photo_set("heldout")
    # the default world's photos, exactly as before the held-out set existed (the shipped student saw these)
    assert default == textures.PHOTO_NAMES == ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                                                "hubble_deep_field", "retina", "colorwheel")
    assert len(heldout) == len(default) and not set(default) & set(heldout)
    extra = textures.photo_set("extra")
    assert not set(extra) & (set(default) | set(heldout)) and textures.photo_set("wide") == default + extra
    assert textures.POOL == default + heldout + extra
    assert textures.photo_set("camera, coins") == ("camera", "coins")
    with pytest.raises(ConfigError, match="unknown photo 'lena'"):
        textures.photo_set("camera,lena")
    with pytest.raises(ConfigError, match="named twice"):
        textures.photo_set("camera,camera")


def test_every_heldout_photo_loads_as_rgb() -> None:
    pytest.importorskip("skimage")
    imgs = textures.photos(textures.photo_set("heldout"))
    assert len(imgs) == len(textures.photo_set("heldout"))
    assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype.name == "uint8" and min(im.shape[:2]) >= 256
               for im in imgs)
    default = {im.tobytes() for im in textures.photos()}
    assert not default & {im.tobytes() for im in imgs}  # not the same picture under another name (cat = chelsea)


def test_every_extra_photo_loads_and_is_none_of_the_others() -> None:
    pytest.importorskip("skimage")
    imgs = textures.photos(textures.photo_set("extra"))
    assert len(imgs) == len(textures.photo_set("extra"))  # scikit-learn's and matplotlib's files load offline
    assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype.name == "uint8" and min(im.shape[:2]) >= 160
               for im in imgs)
    others = {im.tobytes() for name in ("default", "heldout") for im in textures.photos(textures.photo_set(name))}
    assert len({im.tobytes() for im in imgs} - others) == len(imgs)


def test_personal_only_heldout_world(tmp_path: Path) -> None:
    full = generate_world(tmp_path / "full", size="tiny", seed=1, photos="heldout", progress=False)
    only = generate_world(tmp_path / "only", size="tiny", seed=1, photos="heldout", splits="personal", progress=False)
    doc = yaml.safe_load(only.read_text())
    assert list(doc["splits"]) == ["personal"] and doc["world"]["photos"] == list(textures.photo_set("heldout"))
    assert {v["split"] for v in doc["instances"].values()} == {"personal"}
    assert not (only.parent / "base").exists()
    # the personal split is the same as the full world's: skipping base costs nothing in fidelity
    assert _files(only.parent / "personal") == _files(full.parent / "personal")
    # another photo set changes the pictures, not the layout
    same_seed = generate_world(tmp_path / "d", size="tiny", seed=1, splits="personal", progress=False)
    assert "photos" not in yaml.safe_load(same_seed.read_text())["world"]  # the default world's YAML as before
    a, b = _files(only.parent / "personal"), _files(same_seed.parent / "personal")
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a if k.endswith(".jpg"))
    with pytest.raises(ConfigError, match="--splits"):
        generate_world(tmp_path / "bad", size="tiny", splits="base", progress=False)


def test_every_texture_and_background_of_a_world_comes_from_its_set(tmp_path: Path, monkeypatch) -> None:
    asked: list[tuple[str, ...]] = []
    real_crop, real_photos = textures.crop, textures.photos

    def crop(rng, size, names=textures.PHOTO_NAMES):
        asked.append(names)
        return real_crop(rng, size, names)

    def photos(names=textures.PHOTO_NAMES):
        asked.append(names)
        return real_photos(names)

    monkeypatch.setattr(textures, "crop", crop)
    monkeypatch.setattr(textures, "photos", photos)
    generate_world(tmp_path / "h", size="tiny", seed=1, photos="heldout", progress=False)
    assert asked and set(asked) == {textures.photo_set("heldout")}
    asked.clear()
    generate_world(tmp_path / "d", size="tiny", seed=1, progress=False)
    assert asked and set(asked) == {textures.PHOTO_NAMES}


def test_evaluation_runs_on_a_personal_only_world(tmp_path: Path) -> None:
    """What the demo's heldout-evaluate stage needs from the world: the personal split and its episodes."""
    from mocha.data.dataset import load_dataset, load_episodes

    yml = generate_world(tmp_path / "w", size="tiny", seed=2, photos="heldout", splits="personal", progress=False)
    spec = load_dataset(yml)
    split, eps = load_episodes(spec, 1, 3, 0, split="personal")
    assert split == "personal" and len(eps) == 3


@pytest.mark.parametrize(("args", "match"), [
    ({"heldout_seed": 0}, "heldout_seed=0: the held-out world needs another seed"),
    ({"seed": 4}, None),  # the default held-out seed follows seed
    ({"seed": 3, "heldout_seed": 3}, "heldout_seed=3"),
    ({"heldout_photos": "default"}, "shares astronaut, .* with the default world's photos"),
    ({"heldout_photos": "camera,coffee"}, "heldout_photos=camera,coffee: shares coffee"),
    ({"heldout_photos": "camera,lena"}, "unknown photo 'lena'"),
    ({"heldout": False, "heldout_seed": 0, "heldout_photos": "default"}, None),  # nothing held out: nothing checked
])
def test_demo_refuses_an_overlapping_heldout_world(args: dict, match: str | None) -> None:
    from mocha.demo.config import DemoConfig

    if match is None:
        cfg = DemoConfig(**args)
        assert cfg.heldout_world_seed != cfg.seed or not cfg.heldout
    else:
        with pytest.raises(ConfigError, match=match):
            DemoConfig(**args)


def test_demo_cli_refuses_an_overlapping_heldout_world(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import mocha.demo.run
    from mocha.cli import main

    def no_demo(cfg):  # refused while parsing the options: no stage may start
        raise AssertionError("the demo started")

    monkeypatch.setattr(mocha.demo.run, "run_demo", no_demo)

    with pytest.raises(SystemExit) as exc:
        main(["demo", "heldout_seed=0", f"out={tmp_path}"])
    assert exc.value.code == 2 and "heldout_seed=0" in capsys.readouterr().err
    assert not (tmp_path / "stages").exists()  # refused before any stage ran
