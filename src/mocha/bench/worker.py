"""A benchmark runtime in its own clean process, driven one timed call at a time over stdin/stdout.

Protocol: the worker prints `ready` once loaded; for each `time` line it answers `<ms> <boxes>`, optionally followed
by `key=value` numbers (stage times, memory) that land in `TimedWorker.extra`; `quit` ends it.
Each runtime gets its own process so torch and onnxruntime never fight over the same cores' thread pools.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a worker limited to `threads` OpenMP/MKL threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def serve_timed_calls(fn: Callable[[], tuple[int, dict[str, float]]], warmup: int,
                      after: Callable[[], dict[str, float]] | None = None) -> None:
    """The worker's side of the protocol: call `fn` `warmup` times, print `ready`, then answer each `time` line
    with `<ms> <boxes> key=value ...` (`fn()` → (boxes, numbers), then `after()`'s numbers, untimed) until `quit`."""
    for _ in range(warmup):
        fn()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        t0 = time.perf_counter()
        boxes, numbers = fn()
        ms = (time.perf_counter() - t0) * 1000
        numbers = {**numbers, **(after() if after else {})}
        print(" ".join([f"{ms:.4f}", str(int(boxes)), *(f"{k}={v:.4f}" for k, v in numbers.items())]), flush=True)


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
