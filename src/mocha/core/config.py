"""Config dataclasses: the one source of truth for every option of every verb.

A verb's options are the fields of its config dataclass. Each field is declared with `option(...)`, which
holds the default, the help text and the declarative constraints (choices, ranges, multiples, file existence,
in the spirit of scikit-learn's `_parameter_constraints`). From those fields:

- `Config.__post_init__` coerces values (CLI strings → int / float / bool / Path / lists) and validates them
  once, raising one `ConfigError` that names the option (`epochs=-1: must be >= 1`);
- `Config.from_kwargs(**kw)` refuses an unknown key and suggests the closest valid one (as ultralytics'
  `check_dict_alignment` does);
- `mocha.core.cli.command(...)` generates the typer command, so `mocha <verb> k=v` and
  `<stage function>(<Config>(k=v))` are the same call.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mocha.core.registry import unknown_message
from mocha.errors import ConfigError

C = TypeVar("C", bound="Config")

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    multiple_of: int | None = None,
    exists: bool | Sequence[str] = False,
    positional: bool = False,
    cli: bool = True,
    default_text: str | None = None,
) -> Any:
    """A config field. `exists=True`: a path that must exist (when given); `exists=<names>`: that, or one of these
    names of something mocha ships (`bundle=coco`, `detector=nanodet-g`). `positional=True`: also accepted as
    the verb's positional argument (`mocha data check DATA`). `cli=False`: Python-only (objects, callbacks).
    `default_text` replaces the default shown in `--help` (e.g. "the recipe's")."""
    meta = {
        "help": help,
        # a callable is resolved at validation time (a registry whose module is heavy to import)
        "choices": tuple(choices) if choices is not None and not callable(choices) else choices,
        "ge": ge, "gt": gt, "le": le, "lt": lt,
        "multiple_of": multiple_of,
        "exists": exists,
        "positional": positional,
        "cli": cli,
        "default_text": default_text,
    }  # fmt: skip
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (the module uses `from __future__ import annotations`)."""
    cache = cls.__dict__.get("_mocha_types")
    if cache is None:
        cache = typing.get_type_hints(cls)
        cls._mocha_types = cache  # type: ignore[attr-defined]
    return cache


def base_type(tp: Any) -> tuple[Any, bool]:
    """(`X`, optional) for `X`, `X | None` and `Optional[X]`."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def is_bool(tp: Any) -> bool:
    return base_type(tp)[0] is bool


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: expected true or false")


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a (CLI string or Python) value to the field type; `ConfigError` naming the option if it can't."""
    inner, optional = base_type(tp)
    if value is None:
        if optional or inner is Any:
            return None
        raise ConfigError(f"{name}: a value is required")
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "null"):
        return None
    if inner is Any or inner is object:
        return value
    if inner is bool:
        return parse_bool(value, name)
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        (item,) = typing.get_args(inner)[:1] or (str,)
        if isinstance(value, str) and value.strip().lower() == "none":  # how --help shows an empty list
            value = ""
        items = [s for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
        out = [coerce(s.strip() if isinstance(s, str) else s, item, name) for s in items]
        return out if origin is list else tuple(out)
    if inner is Path:
        return Path(value).expanduser() if not isinstance(value, Path) else value
    if inner is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name}={value!r}: expected an integer")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip())
        except ValueError:
            raise ConfigError(f"{name}={value!r}: expected an integer") from None
    if inner is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r}: expected a number") from None
    if inner is str:
        return str(value)
    return value


def check_constraints(name: str, value: Any, meta: dict[str, Any]) -> None:
    """The declarative checks of one option (each item of a list is checked)."""
    if value is None:
        return
    for v in value if isinstance(value, list | tuple) else [value]:
        choices = meta.get("choices")
        if callable(choices):
            choices = tuple(choices())
        if choices is not None and v not in choices:
            raise ConfigError(unknown_message(name, str(v), [str(c) for c in choices]))
        if isinstance(v, int | float) and not isinstance(v, bool):
            for key, ok, word in (
                ("ge", lambda a, b: a >= b, ">="),
                ("gt", lambda a, b: a > b, ">"),
                ("le", lambda a, b: a <= b, "<="),
                ("lt", lambda a, b: a < b, "<"),
            ):
                bound = meta.get(key)
                if bound is not None and not ok(v, bound):
                    raise ConfigError(f"{name}={v}: must be {word} {bound}")
            step = meta.get("multiple_of")
            if step and v % step:
                raise ConfigError(f"{name}={v}: must be a multiple of {step}")
        exists = meta.get("exists")
        if exists and isinstance(v, Path) and not v.exists():
            shipped = () if exists is True else tuple(exists)
            if str(v) not in shipped:
                also = f", and not a shipped name ({', '.join(shipped)})" if shipped else ""
                raise ConfigError(f"{name}={v}: no such file or folder{also}")


@dataclasses.dataclass(kw_only=True)
class Config:
    """Base of every verb's config. Subclasses are `@dataclass(kw_only=True)` with `option(...)` fields and may
    override `validate()` for checks across fields (call `super().validate()` first)."""

    # Verb name for messages ("distill", "teacher extract"); set by subclasses.
    verb: ClassVar[str] = ""

    def __post_init__(self) -> None:
        types_ = field_types(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("cli", True) or isinstance(value, str):
                value = coerce(value, types_[f.name], f.name)
                object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            if f.metadata:
                check_constraints(f.name, getattr(self, f.name), dict(f.metadata))

    @classmethod
    def check_keys(cls, keys: Sequence[str]) -> None:
        """Refuse unknown keys, suggesting the closest valid one."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in keys:
            if key not in valid:
                where = f" for `mocha {cls.verb}`" if cls.verb else ""
                raise ConfigError(unknown_message("option", key, sorted(valid), where))

    @classmethod
    def from_kwargs(cls: type[C], **kwargs: Any) -> C:
        """`Config(**kwargs)` with an unknown key refused (closest valid key suggested) and values coerced."""
        cls.check_keys(list(kwargs))
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
        ]
        if missing:
            raise ConfigError(", ".join(f"{m}=... is required" for m in missing))
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some options changed (validated again)."""
        self.check_keys(list(changes))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (paths as strings; Python-only fields left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("cli", True):
                continue
            v = getattr(self, f.name)
            out[f.name] = [str(x) if isinstance(x, Path) else x for x in v] if isinstance(v, list | tuple) else (
                str(v) if isinstance(v, Path) else v
            )
        return out

    @classmethod
    def bool_options(cls) -> list[str]:
        types_ = field_types(cls)
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True) and is_bool(types_[f.name])]
