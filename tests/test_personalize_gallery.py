"""Gallery file: round trip, bundle tie, atomic updates under SIGKILL, WAL readers, locks, corrupt files, migration."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mocha.errors import ConfigError
from mocha.personalize.gallery import _SCHEMA_V1, SCHEMA_VERSION, Gallery, Support

DIM = 8


def sup(seed: int, source: str = "a.jpg") -> Support:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return Support(source, f"{seed:064x}", [1.0, 2.0, 30.0, 40.0], "user", v)


@pytest.fixture
def gpath(tmp_path):
    path = tmp_path / "me.gallery"
    Gallery.create(path, "digestA", "/bundles/a", DIM).close()
    return path


def test_round_trip_prototype_and_remove(gpath):
    with Gallery(gpath) as g:
        assert g.schema_version == SCHEMA_VERSION and g.bundle_digest == "digestA" and g.dim == DIM
        assert g.bundle_path == "/bundles/a" and len(g) == 0
        g.add("mug", 0, "mug", [sup(1), sup(2, "b.jpg")])
        g.add("dog", 3, "dog", [Support("d.jpg", "0" * 64, [0, 0, 5, 5], "detector", sup(3).embedding, 0.7)])
        with pytest.raises(ConfigError, match="already enrolled.*append"):
            g.add("mug", 0, "mug", [sup(4)])
        with pytest.raises(ConfigError, match="enrolled as 'mug'"):
            g.add("mug", 1, "ball", [sup(4)], append=True)
        g.add("mug", 0, "mug", [sup(4)], append=True)
    with Gallery(gpath) as g:  # persisted
        assert g.names() == ["mug", "dog"]
        mug = g.get("mug")
        assert mug.shots == 3 and [s.source for s in mug.supports] == ["a.jpg", "b.jpg", "a.jpg"]
        want = np.mean([sup(i).embedding for i in (1, 2, 4)], axis=0)
        assert np.allclose(mug.prototype, want, atol=1e-6)
        dog = g.get("dog")
        assert dog.supports[0].box_source == "detector" and dog.supports[0].det_conf == pytest.approx(0.7)
        g.remove("mug")
        with pytest.raises(ConfigError, match="unknown instance 'mug'.*dog"):
            g.remove("mug")
        assert g.names() == ["dog"]
        assert g._con.execute("SELECT COUNT(*) FROM supports").fetchone()[0] == 1
        with pytest.raises(ConfigError, match="shape"):
            g.add("x", 0, "mug", [Support("a", "0", [0, 0, 1, 1], "user", np.zeros(3, np.float32))])


def test_bundle_tie_and_create_refuses_existing(gpath):
    with Gallery(gpath) as g:
        g.check_bundle("digestA")
        with pytest.raises(ConfigError, match="made with bundle digestA.*not with digestB"):
            g.check_bundle("digestB")
    with pytest.raises(ConfigError, match="already exists"):
        Gallery.create(gpath, "digestB", None, DIM)
    with pytest.raises(ConfigError, match="gallery not found"):
        Gallery(gpath.parent / "missing.gallery")


@pytest.mark.parametrize(
    "content", [b"", b"hello, this is not a database at all" * 20, b"SQLite format 3\x00" + b"\x07" * 500]
)
def test_corrupt_files_are_refused_untouched(tmp_path, content):
    path = tmp_path / "bad.gallery"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not a gallery|corrupt"):
        Gallery(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gallery"]


def _busiest_leaf_page(data: bytes) -> tuple[int, int]:
    """(offset, size) of the table-leaf b-tree page with the most cells (never page 1, which holds the header)."""
    size = int.from_bytes(data[16:18], "big")
    best = (0, 0)
    for off in range(size, len(data), size):
        if data[off] == 0x0D:  # table b-tree leaf
            best = max(best, (int.from_bytes(data[off + 3:off + 5], "big"), off))
    assert best[0] >= 5, "the gallery should span several data pages"
    return best[1], size


def test_page_level_corruption_is_caught_by_quick_check_and_untouched(tmp_path, capsys):
    """Record bytes overwritten inside a data page (the SQLite header and schema stay valid, so the file opens
    and its meta reads fine): only `PRAGMA quick_check` sees it. One MochaError naming the file, file unchanged."""
    from mocha.cli import main
    from mocha.errors import MochaError
    from mocha.personalize.personalizer import Personalizer

    path = tmp_path / "me.gallery"
    Gallery.create(path, "digestA", None, 64).close()
    with Gallery(path) as g:
        for i in range(30):
            v = np.random.default_rng(i).normal(size=64).astype(np.float32)
            g.add(f"inst{i}", i % 3, "mug", [Support(f"{i}.jpg", "0" * 64, [1, 2, 30, 40], "user", v)])
    data = bytearray(path.read_bytes())
    off, size = _busiest_leaf_page(bytes(data))
    content = off + int.from_bytes(data[off + 5:off + 7], "big")  # the cell content area of that page
    assert off >= size and content + 16 <= off + size
    data[content:content + 16] = b"\xff" * 16  # a record's header: sizes and rowid now nonsense
    path.write_bytes(bytes(data))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # still an SQLite gallery on the surface
    assert con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("mocha-gallery",)
    con.close()
    # quick_check's own report ("*** in database main ***"), not the DatabaseError branch's "not a gallery or corrupt"
    want = rf"(?s){re.escape(str(path))}: gallery file is corrupt \(\*\*\* in database main.*it was left untouched"
    with pytest.raises(MochaError, match=want):
        Gallery(path)
    with pytest.raises(MochaError, match=want):
        Personalizer.load(gallery=path)
    with pytest.raises(SystemExit) as e:
        main(["gallery", "list", f"gallery={path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "corrupt" in err and "Traceback" not in err
    assert path.read_bytes() == bytes(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["me.gallery"]  # no -wal / -shm left behind


def test_sqlite_but_not_a_gallery_is_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="not a mocha gallery"):
        Gallery(path)
    assert path.read_bytes() == before


def test_wal_reader_sees_old_state_while_a_writer_is_mid_transaction(gpath):
    writer = Gallery(gpath)
    writer.add("mug", 0, "mug", [sup(1)])
    reader = Gallery(gpath)
    con = writer._con
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM instances")
    assert reader.names() == ["mug"]  # WAL: not blocked, sees the last commit
    # a second writer times out with a clear message instead of hanging
    other = Gallery(gpath, timeout=0.2)
    with pytest.raises(ConfigError, match="locked by another process"):
        other.add("dog", 3, "dog", [sup(2)])
    con.execute("ROLLBACK")
    other.add("dog", 3, "dog", [sup(2)])
    assert reader.names() == ["mug", "dog"]
    for g in (writer, reader, other):
        g.close()


def test_sigkill_mid_enroll_leaves_the_gallery_as_it_was(gpath):
    with Gallery(gpath) as g:
        g.add("mug", 0, "mug", [sup(1)])
        before = g.get("mug").prototype
    script = textwrap.dedent(
        """
        import sys, time
        import numpy as np
        from mocha.personalize import gallery as gm

        real = gm.Gallery._insert_support
        def slow(self, con, name, s):
            real(self, con, name, s)
            print("inside", flush=True)
            time.sleep(120)
        gm.Gallery._insert_support = slow
        g = gm.Gallery(sys.argv[1])
        v = np.ones(8, np.float32)
        g.add("mug", 0, "mug", [gm.Support("x.jpg", "0", [0, 0, 1, 1], "user", v)], append=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(gpath)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    with Gallery(gpath) as g:
        assert g.names() == ["mug"]
        mug = g.get("mug")
        assert mug.shots == 1 and np.array_equal(mug.prototype, before)
        assert g._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        g.add("mug", 0, "mug", [sup(5)], append=True)  # and it is writable again
        assert g.get("mug").shots == 2


def test_migration_from_v1_and_refusing_newer(tmp_path):
    path = tmp_path / "old.gallery"
    con = sqlite3.connect(path)
    con.executescript(_SCHEMA_V1)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "mocha-gallery"), ("bundle_digest", "d"),
                                                        ("bundle_path", ""), ("dim", str(DIM))])
    v = np.arange(DIM, dtype=np.float32)
    con.execute("INSERT INTO instances VALUES ('cup', 0, 'mug', ?, 't', 't')", (v.tobytes(),))
    con.execute("INSERT INTO supports(instance, source, sha256, box, embedding, added) VALUES "
                "('cup', 'a.jpg', 'h', '[0, 0, 4, 4]', ?, 't')", (v.tobytes(),))
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with Gallery(path) as g:
        assert g.schema_version == SCHEMA_VERSION
        cup = g.get("cup")
        assert cup.shots == 1 and cup.supports[0].box_source == "user" and np.array_equal(cup.prototype, v)
        g._con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer than this mocha"):
        Gallery(path)


def test_odd_file_names(tmp_path):
    path = tmp_path / "my #1 gallery?.db"
    Gallery.create(path, "d", None, DIM).close()
    with Gallery(path) as g:
        g.add("a", 0, "mug", [sup(1)])
    with Gallery(path) as g:
        assert g.names() == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [path.name]


def test_settings_and_memory_gallery():
    g = Gallery.create(":memory:", "d", None, DIM)
    assert g.get_setting("min_similarity", 0.3) == 0.3
    g.set_setting("min_similarity", 0.42)
    assert g.get_setting("min_similarity") == 0.42
    g.add("a", 1, "ball", [sup(1)])
    assert [r.summary()["coarse"] for r in g.instances()] == ["ball"]
    g.close()


def test_instance_ids_are_stable_and_never_reused(gpath):
    with Gallery(gpath) as g:
        g.add("a", 0, "mug", [sup(1)])
        g.add("b", 0, "mug", [sup(2)])
        ids = {r.name: r.id for r in g.instances()}
        assert ids["a"] < ids["b"]
        g.remove("b")  # the largest id: SQLite alone would hand it to the next row
        g.add("c", 1, "ball", [sup(3)])
    with Gallery(gpath) as g:
        now = {r.name: r.id for r in g.instances()}
        assert now["a"] == ids["a"] and now["c"] > ids["b"]
        assert g.instances()[0].summary()["id"] == ids["a"]
