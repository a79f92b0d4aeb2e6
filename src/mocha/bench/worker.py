"""A benchmark runtime in its own clean process, driven one timed call at a time over stdin/stdout.

Protocol: the worker prints `ready` once loaded; for each `time` line it answers `<ms> <boxes>`, optionally followed
by `key=value` numbers (stage times, memory) that land in `TimedWorker.extra`; `quit` ends it.
Each runtime gets its own process so torch and onnxruntime never fight over the same cores' thread pools.
"""

from __future__ import annotations

import os
import subprocess
import sys


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a worker limited to `threads` OpenMP/MKL threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class TimedWorker:
    """`python -m <module> <args>` as a timed worker; `label` names it in errors."""

    def __init__(self, module: str, args: list[str], threads: int, label: str) -> None:
        self.label = label
        self.extra: dict[str, float] = {}  # the last timed call's key=value numbers
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=thread_env(threads))
        self._expect("ready")

    def _expect(self, what: str = "") -> str:
        line = self.proc.stdout.readline()
        if not line or (what and line.strip() != what):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"{self.label} failed: {line.strip()!r}\n{err[-3000:]}")
        return line

    def time(self) -> tuple[float, int]:
        """(ms, boxes) of one timed call."""
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        ms, boxes, *rest = self._expect().split()
        self.extra = {k: float(v) for k, _, v in (item.partition("=") for item in rest)}
        return float(ms), int(boxes)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
