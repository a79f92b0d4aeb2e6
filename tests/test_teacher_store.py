"""Embedding store + extraction with the real built-in teacher: keys, resume, refusal to mix, kill, torchrun."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.data.dataset import load_dataset
from mocha.data.records import read_split
from mocha.data.world import generate_world
from mocha.errors import ConfigError
from mocha.teacher.base import MergedTeacher, Teacher, teacher_key
from mocha.teacher.extract import extract_split
from mocha.teacher.registry import create_teacher
from mocha.teacher.store import EmbeddingStore, record_keys, region_key

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world(tmp_path_factory.mktemp("w") / "world", size="tiny", seed=1, progress=False)


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return create_teacher("builtin", device="cpu")


@pytest.fixture(scope="module")
def full_store(world: Path, teacher: Teacher, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s") / "store"
    for split in ("base_train", "personal"):
        extract_split(world, split, out, teacher=teacher, progress=False)
    return out


def _content(path: Path) -> dict[bytes, np.ndarray]:
    s = EmbeddingStore.open(path)
    keys = s.keys()
    return dict(zip(keys, s.get(keys).float().numpy(), strict=True))


def _rows_on_disk(path: Path) -> int:
    from safetensors import safe_open

    n = 0
    for f in EmbeddingStore.open(path).chunk_files():
        with safe_open(str(f), framework="pt") as sf:
            n += sf.get_slice("keys").get_shape()[0]
    return n


def test_store_matches_teacher_on_crops(world: Path, teacher: Teacher, full_store: Path) -> None:
    from mocha.data.images import load_image, norm_cxcywh_to_xyxy
    from mocha.teacher.crops import crop_regions

    spec = load_dataset(world)
    recs = read_split(spec, "personal")[:3]
    store = EmbeddingStore.open(full_store)
    assert store.teacher_name == "builtin" and store.dim == 1664 and store.teacher_key == teacher_key(teacher)
    for rec, ks in zip(recs, store.region_keys(recs, spec.names), strict=False):
        img = load_image(rec.image)
        crops = crop_regions(img, norm_cxcywh_to_xyxy(rec.boxes, img.shape[1], img.shape[0]))
        want = teacher.embed(crops, [spec.names[c] for c in rec.coarse])
        got = store.get(ks)
        assert got.dtype == torch.float16
        torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=2e-3)


def test_key_depends_on_content_box_label_and_teacher(tmp_path: Path) -> None:
    k = region_key("a" * 64, [0.5, 0.5, 0.2, 0.2], "mug", "t1")
    assert len(k) == 16
    assert k == region_key("a" * 64, np.array([0.5, 0.5, 0.2, 0.2], np.float32), "mug", "t1")
    others = [region_key("b" * 64, [0.5, 0.5, 0.2, 0.2], "mug", "t1"), region_key("a" * 64, [0.5, 0.5, 0.2, 0.21],
              "mug", "t1"), region_key("a" * 64, [0.5, 0.5, 0.2, 0.2], "cup", "t1"),
              region_key("a" * 64, [0.5, 0.5, 0.2, 0.2], "mug", "t2")]
    assert len({k, *others}) == 5


def test_same_bytes_under_another_path_share_entries(world: Path, full_store: Path, tmp_path: Path) -> None:
    spec = load_dataset(world)
    rec = read_split(spec, "personal")[0]
    copy = tmp_path / "copy.jpg"
    shutil.copy(rec.image, copy)
    rec2 = type(rec)(copy, rec.label, rec.boxes, rec.coarse, rec.instance, rec.size)
    store = EmbeddingStore.open(full_store)
    assert record_keys([rec2], spec.names, store.teacher_key) == store.region_keys([rec], spec.names)
    assert all(store.has(k) for k in store.region_keys([rec2], spec.names)[0])


def test_rerun_reuses_everything_without_loading_the_teacher(world: Path, full_store: Path) -> None:
    before = _content(full_store)
    st = extract_split(world, "personal", full_store, teacher=None, progress=False)
    assert st.reused == st.regions > 0 and st.extracted == 0 and not st.teacher_loaded
    assert _content(full_store).keys() == before.keys()


def test_refuses_another_teacher_or_settings(world: Path, full_store: Path, teacher: Teacher) -> None:
    with pytest.raises(ConfigError, match="refusing to mix"):
        extract_split(world, "personal", full_store, teacher="clip", progress=False)
    other = MergedTeacher("builtin", teacher.text, teacher.image)
    other.settings = lambda: {"changed": True}  # type: ignore[method-assign]
    with pytest.raises(ConfigError, match="refusing to mix"):
        extract_split(world, "personal", full_store, teacher=other, progress=False)


def test_unknown_teacher_and_bad_options() -> None:
    with pytest.raises(ConfigError, match="unknown teacher 'dino'"):
        create_teacher("dino")
    with pytest.raises(ConfigError, match="unknown option"):
        create_teacher("builtin", decoding="greedy")


def test_merge_rule_and_text_side(teacher: Teacher) -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    u = teacher.embed(crops, ["mug", "mug", "dog"])
    h, z = u[:, :384], u[:, 384:]
    torch.testing.assert_close(h.norm(dim=1), z.norm(dim=1))
    torch.testing.assert_close(h[0], h[1])  # text side depends on the label only
    assert not torch.allclose(h[0], h[2]) and not torch.allclose(z[0], z[1])
    # batch of regions == one at a time
    one = torch.cat([teacher.embed([c], [lab]) for c, lab in zip(crops, ["mug", "mug", "dog"], strict=False)])
    torch.testing.assert_close(one, u, atol=1e-4, rtol=1e-4)


def test_crops_reject_bad_boxes() -> None:
    from mocha.errors import DataError
    from mocha.teacher.crops import crop_regions

    img = np.zeros((40, 60, 3), np.uint8)
    assert crop_regions(img, np.array([[-5, -5, 10, 10]]))[0].shape == (224, 224, 3)
    with pytest.raises(DataError, match="zero area"):
        crop_regions(img, np.array([[10, 10, 10, 20]]), where="a.jpg")
    with pytest.raises(DataError, match="a.jpg: box 0 .*outside the 60x40 image"):
        crop_regions(img, np.array([[70, 5, 80, 20]]), where="a.jpg")
    assert crop_regions(img, np.array([[70, 5, 80, 20]]), strict=False)[0].shape == (224, 224, 3)


def test_compaction_tolerates_duplicates(world: Path, full_store: Path, tmp_path: Path) -> None:
    dup = tmp_path / "dup"
    shutil.copytree(full_store, dup)
    files = EmbeddingStore.open(dup).chunk_files()
    shutil.copy(files[0], files[0].with_name("zz-copy.safetensors"))  # what a kill during compaction leaves
    s = EmbeddingStore.open(dup)
    assert s.duplicates > 0 and len(s) == len(EmbeddingStore.open(full_store))
    s.compact()
    assert _rows_on_disk(dup) == len(s) and s.duplicates == 0
    assert _content(dup).keys() == _content(full_store).keys()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mocha.cli", "teacher", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return env


def test_kill_and_resume(world: Path, full_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = _cli("extract", f"data={world}", f"out={out}", "split=personal", "batch=2", "flush_every=2",
                "progress=false")
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if out.is_dir() and len(list((out / "chunks").glob("*.safetensors"))) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "extraction finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    spec = load_dataset(world)
    recs = read_split(spec, "personal")
    partial = EmbeddingStore.open(out)
    total = sum(len(r.boxes) for r in recs)
    assert 0 < len(partial) < total and partial.duplicates == 0
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(partial)} reused" in done.stdout
    got, want = _content(out), _content(full_store)
    mine = {k for ks in EmbeddingStore.open(out).region_keys(recs, spec.names) for k in ks}
    assert set(got) == mine and _rows_on_disk(out) == len(got)  # nothing missing, nothing duplicated
    for k in got:
        np.testing.assert_allclose(got[k], want[k], atol=2e-3)


@pytest.mark.timeout(600)  # its torchrun may take 300 s
def test_torchrun_two_processes_same_store(world: Path, full_store: Path, tmp_path: Path, free_port: int) -> None:
    out = tmp_path / "store2"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port}",
           "-m", "mocha.cli", "teacher", "extract", f"data={world}", f"out={out}", "split=base_train,personal",
           "batch=4", "progress=false"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got, want = _content(out), _content(full_store)
    assert got.keys() == want.keys() and _rows_on_disk(out) == len(got)
    for k in got:
        np.testing.assert_allclose(got[k], want[k], atol=2e-3)
    s = EmbeddingStore.open(out)
    assert s.splits() == ["base_train", "personal"]


def test_digest_with_held_vectors_matches_a_fresh_gather(full_store: Path) -> None:
    store = EmbeddingStore.open(full_store)
    keys = list(store._index)[::-1]  # any order: the digest sorts
    assert store.digest(keys, store.get(keys)) == store.digest(keys) == store.digest()
    vecs = store.get(keys).clone()
    vecs[0, 0] += 1
    assert store.digest(keys, vecs) != store.digest(keys)  # the vectors are hashed, not only the keys
    with pytest.raises(ValueError, match="distinct keys"):
        store.digest(keys + keys[:1], store.get(keys + keys[:1]))
