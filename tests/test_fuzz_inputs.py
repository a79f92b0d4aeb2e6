"""Fuzzed bad input (hypothesis, profile `small`): every artifact kind ends in one MochaError naming the file,
never another exception, never a hang, and the user's files are left as they were. `mocha bench faults` runs
the same cases under the `large` profile (≥ 1,000 in all)."""

from __future__ import annotations

import pytest

from mocha.bench.fuzz import PROFILES, TARGETS, Artifact, Tally, fuzz_kind, run_case


@pytest.mark.parametrize("kind", list(TARGETS))
def test_bad_input_ends_in_one_mocha_error_naming_the_file(kind, tmp_path):
    tally = fuzz_kind(kind, "small", seed=19, workdir=tmp_path)
    assert tally.tried == PROFILES["small"]
    assert tally.tracebacks == [] and tally.hangs == [] and tally.modified == []
    assert tally.refused >= 1  # the mutations reached the checks, not only harmless bytes


def test_the_harness_sees_tracebacks_unnamed_files_hangs_and_edits(tmp_path):
    from mocha.errors import DataError

    f = tmp_path / "a.txt"
    f.write_text("x")

    def case(load) -> Tally:
        t = Tally("probe")
        run_case(Artifact([f], str(f), load, tmp_path), f, b"y", "probe", t, limit=0.5)
        return t

    assert case(lambda: int("y")).tracebacks  # a ValueError is a traceback
    assert case(lambda: (_ for _ in ()).throw(DataError("something is wrong"))).tracebacks  # names no file
    assert case(lambda: (_ for _ in ()).throw(DataError(f"{f}: bad"))).refused == 1

    def spin() -> None:
        while True:
            pass

    assert case(spin).hangs

    def edit() -> None:
        (tmp_path / "other.txt").write_text("changed")

    (tmp_path / "other.txt").write_text("mine")
    assert case(edit).modified and f.read_text() == "x"  # the mutated file itself is restored
