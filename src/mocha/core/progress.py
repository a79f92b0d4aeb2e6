"""Progress: a tqdm bar on a terminal; elsewhere (CI, `> log`) one plain line every few seconds per stage.

`progress(total=..., desc=...)` returns an object with tqdm's `update`, `set_postfix`, `close` and context
manager; iterate with `progress(iterable, ...)`. `MOCHA_PROGRESS_SECONDS` sets the line interval (default 10).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


def interval_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("MOCHA_PROGRESS_SECONDS", "10")))
    except ValueError:
        return 10.0


class LineProgress:
    """tqdm's surface, printing `desc: n/total (pct) rate/s [postfix]` at most once per interval, and at close."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, every: float | None = None) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file or sys.stderr
        self.every = interval_seconds() if every is None else every
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def write(self, s: str) -> None:
        print(s, file=self.file, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=True)

    def _line(self, done: bool = False) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        tail = f" [{self.postfix}]" if self.postfix else ""
        end = f" done in {elapsed:.1f}s" if done else ""
        print(f"{self.desc}: {self.n}{of}{pct} {self.n / elapsed:.1f} {self.unit}/s{tail}{end}", file=self.file,
              flush=True)


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             enable: bool = True, leave: bool = True, file: TextIO | None = None) -> Any:
    """A tqdm bar when the stream is a terminal, `LineProgress` otherwise; a silent one when not `enable`."""
    stream = file or sys.stderr
    if enable and stream.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, file=stream)
    if not enable:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, file=stream)
