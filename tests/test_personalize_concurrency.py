"""Several processes on one gallery file: two enrol while a third detects; readers while the schema migrates."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mocha.personalize import gallery as gallery_mod
from mocha.personalize.gallery import _SCHEMA_V1, SCHEMA_VERSION, Gallery
from tests.test_personalize_api import make_bundle, scene

PER_WRITER = 10


def _enroller(bundle: str, gallery: str, image: str, prefix: str, start, out) -> None:
    try:
        import torch

        torch.set_num_threads(1)
        from mocha.personalize.personalizer import Personalizer

        start.wait(60)
        with Personalizer.load(bundle, gallery=gallery) as p:  # both writers may find no gallery yet
            for k in range(PER_WRITER):
                p.enroll(f"{prefix}{k}", image, boxes=[[10 + k, 10, 100 + k, 120]], coarse="mug")
        out.put((prefix, "ok"))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test with it
        out.put((prefix, traceback.format_exc()))


def _detector(gallery: str, image: str, stop, out) -> None:
    try:
        import torch

        torch.set_num_threads(1)
        from mocha.personalize.personalizer import Personalizer

        seen, engine = [], None
        while not stop.is_set() or not seen:
            if not Path(gallery).exists():
                continue
            if engine is None:  # the model once; the gallery afresh every round (what another reader would see)
                with Personalizer.load(gallery=gallery) as first:
                    engine = first.engine
            with Personalizer(engine, Gallery(gallery), conf=0.0, max_det=5) as p:
                r = p.detect(image)
                assert len(r) == 5
                seen.append(len(p.instances()))
        out.put(("detector", seen))
    except BaseException:  # noqa: BLE001
        out.put(("detector", traceback.format_exc()))


@pytest.mark.timeout(600)
def test_two_writers_and_a_reader_keep_every_instance(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    image = tmp_path / "a.png"
    Image.fromarray(scene(0)).save(image)
    gpath = tmp_path / "shared.gallery"
    ctx = mp.get_context("spawn")  # fresh interpreters, as separate users' processes would be
    start, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_enroller, args=(str(bundle), str(gpath), str(image), prefix, start, out))
               for prefix in ("a", "b")]
    reader = ctx.Process(target=_detector, args=(str(gpath), str(image), stop, out))
    for proc in (*writers, reader):
        proc.start()
    try:
        start.set()
        results = {}
        for _ in writers:
            name, res = out.get(timeout=400)
            results[name] = res
        stop.set()
        name, res = out.get(timeout=120)
        results[name] = res
    finally:
        for proc in (*writers, reader):
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert results["a"] == "ok" and results["b"] == "ok", results
    seen = results["detector"]
    assert isinstance(seen, list) and seen, seen  # the reader never failed and saw the gallery
    assert seen == sorted(seen) and seen[-1] <= 2 * PER_WRITER  # counts only grow: every view a committed state
    with Gallery(gpath) as g:
        names = g.names()
        assert sorted(names) == sorted(f"{p}{k}" for p in "ab" for k in range(PER_WRITER))
        assert len({r.id for r in g.instances()}) == 2 * PER_WRITER  # distinct ids across both writers
        assert g._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _v1_gallery(path: Path, n: int = 3) -> None:
    """A schema-v1 gallery (as an older mocha wrote it, in WAL mode) with `n` instances."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(_SCHEMA_V1)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "mocha-gallery"), ("bundle_digest", "d"),
                                                        ("bundle_path", ""), ("dim", "8")])
    for i in range(n):
        v = np.full(8, i, np.float32).tobytes()
        con.execute("INSERT INTO instances VALUES (?, 0, 'mug', ?, 't', 't')", (f"cup{i}", v))
        con.execute("INSERT INTO supports(instance, source, sha256, box, embedding, added) VALUES "
                    "(?, 'a.jpg', 'h', '[0, 0, 4, 4]', ?, 't')", (f"cup{i}", v))
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()


def test_readers_during_a_migration_see_the_old_or_the_new_state(tmp_path, monkeypatch):
    """The v1 → v2 migration is held open mid-transaction; meanwhile raw SQLite readers see v1 (the last
    commit, WAL), and other mocha processes opening the gallery wait for the write lock and then find it
    migrated (they must not migrate it a second time). Nobody gets an error."""
    path = tmp_path / "old.gallery"
    _v1_gallery(path)
    inside, release = threading.Event(), threading.Event()
    real = gallery_mod.MIGRATIONS[1]

    def held(con):
        real(con)
        if threading.current_thread().name == "migrator":
            inside.set()
            release.wait(30)

    monkeypatch.setitem(gallery_mod.MIGRATIONS, 1, held)
    errors, opened = [], {}

    def open_gallery(name):
        try:
            with Gallery(path, timeout=30) as g:
                opened[name] = (g.schema_version, [(r.name, r.shots) for r in g.instances()])
        except BaseException as exc:  # noqa: BLE001
            errors.append((name, repr(exc)))

    migrator = threading.Thread(target=open_gallery, args=("migrator",), name="migrator")
    migrator.start()
    assert inside.wait(30)
    others = [threading.Thread(target=open_gallery, args=(f"r{i}",), name=f"r{i}") for i in range(3)]
    for t in others:
        t.start()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    old = con.execute("PRAGMA user_version").fetchone()[0], con.execute("SELECT name FROM instances").fetchall()
    cols = [r[1] for r in con.execute("PRAGMA table_info(supports)")]
    con.close()
    assert old == (1, [("cup0",), ("cup1",), ("cup2",)]) and "box_source" not in cols  # the old state, whole
    release.set()
    for t in (migrator, *others):
        t.join(60)
    assert errors == []
    want = (SCHEMA_VERSION, [("cup0", 1), ("cup1", 1), ("cup2", 1)])
    assert opened == {name: want for name in ("migrator", "r0", "r1", "r2")}  # the new state, for everyone
