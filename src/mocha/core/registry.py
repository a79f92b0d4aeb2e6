"""One small registry pattern for every pluggable kind (teachers, students, learners, methods, benchmarks).

An entry maps a name to a factory (a class or a function). Factories that need heavy imports import inside
themselves, so listing or looking up names stays cheap. Unknown names get one error that lists the valid
ones and suggests the closest.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from mocha.errors import ConfigError

T = TypeVar("T", bound=Callable[..., Any])


def closest(name: str, choices: list[str] | tuple[str, ...], n: int = 1) -> list[str]:
    """The `n` choices closest to `name` (difflib ratio ≥ 0.5), best first."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def unknown_message(what: str, name: str, choices: list[str] | tuple[str, ...], where: str = "") -> str:
    """`unknown <what> 'x'<where>; did you mean 'y'? (choose one of a, b, c)` — one wording for every lookup."""
    near = closest(name, choices)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown {what} {name!r}{where}{hint} (choose one of {', '.join(choices)})"


class Registry(Generic[T]):
    """name → factory. `register` works as a decorator or a plain call; `get` raises `ConfigError` when unknown."""

    def __init__(self, kind: str, option: str | None = None) -> None:
        self.kind = kind  # e.g. "teacher"
        self.option = option  # the option that takes these names, for error messages (e.g. "teacher")
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, factory: T | None = None, *, help: str = "") -> Any:
        def add(f: T) -> T:
            key = name.strip().lower()
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._items[key] = f
            self._help[key] = help or (f.__doc__ or "").strip().split("\n")[0]
            return f

        return add if factory is None else add(factory)

    def get(self, name: str) -> T:
        key = str(name).strip().lower()
        if key not in self._items:
            where = f"{self.option}: " if self.option else ""
            raise ConfigError(where + unknown_message(self.kind, str(name), self.names()))
        return self._items[key]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return list(self._items)

    def describe(self) -> dict[str, str]:
        """name → one-line description (the factory's docstring unless given)."""
        return dict(self._help)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
