"""The console entry point turns usage errors into one message and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from mocha.cli import main


@pytest.mark.parametrize("argv, message", [
    (["detect", "gallery=x", "out=y"], "unknown option 'out' for `mocha detect`"),
    (["teacher", "extract", "data=x"], "out=... is required"),
    (["teacher", "pca", "store=.", "dim=abc"], "dim='abc': expected an integer"),
    (["teacher", "pca", "store=.", "dim=0"], "dim=0: must be >= 1"),
    (["distill", "epoch=3"], "unknown option 'epoch' for `mocha distill`; did you mean 'epochs'?"),
    (["evaluate", "data=.", "learner=flt"], "unknown learner 'flt'; did you mean 'flat'?"),
    (["evaluate", "data=.", "plots=maybe"], "plots='maybe': expected true or false"),
    (["evaluate", "data=nowhere.yaml"], "data=nowhere.yaml: no such file or folder"),
])
def test_usage_errors_exit_2_with_one_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
