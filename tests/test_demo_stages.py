"""Content-keyed stage cache: reuse, rerun on changed inputs, --fresh, interrupted stages never reused."""

from __future__ import annotations

import pytest

from mocha.demo.stages import run_stage


def test_stage_is_reused_and_rerun_on_change(tmp_path):
    calls = []

    def fn(work):
        calls.append(work)
        (work / "out.txt").write_text("x")
        return {"value": len(calls)}

    a = run_stage(tmp_path, "s", {"cfg": 1}, fn)
    b = run_stage(tmp_path, "s", {"cfg": 1}, fn)
    assert not a.cached and b.cached and b.result == {"value": 1} and len(calls) == 1
    assert (b.dir / "out.txt").read_text() == "x"
    c = run_stage(tmp_path, "s", {"cfg": 2}, fn)
    assert not c.cached and c.result == {"value": 2} and c.dir != a.dir
    d = run_stage(tmp_path, "s", {"cfg": 2}, fn, fresh=True)
    assert not d.cached and d.result == {"value": 3}


def test_interrupted_stage_is_not_reused(tmp_path):
    def boom(work):
        (work / "half.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(tmp_path, "s", {"cfg": 1}, boom)
    assert not list((tmp_path / "stages").glob("s-*"))  # only the .partial folder, never a finished one

    def ok(work):
        assert not (work / "half.bin").exists()
        return {"ok": True}

    r = run_stage(tmp_path, "s", {"cfg": 1}, ok)
    assert r.result == {"ok": True} and not r.cached
