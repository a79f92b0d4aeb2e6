"""The console entry point turns usage errors into one message and exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from mocha.cli import main


@pytest.mark.parametrize("argv, message", [
    (["detect", "gallery=x", "out=y"], "unknown option 'out' for `mocha detect`; did you mean"),
    (["teacher", "extract", "data=x"], "Missing option '--out'"),
    (["teacher", "pca", "store=s", "dim=abc"], "Invalid value for '--dim'"),
])
def test_usage_errors_exit_2_with_one_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
