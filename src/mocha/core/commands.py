"""Typer commands generated from config dataclasses (`mocha.core.config`).

`command(group, "distill", DistillConfig, run)` adds `mocha distill` whose options are the config's fields:
names, help text and shown defaults come from the fields; every value reaches the config as typed on the
command line and is coerced and validated there, once. Bool options are `--x/--no-x` flags and also accept
`x=true|false` (`mocha.cli.rewrite_argv` reads `COMMANDS` to know which keys are bool per verb).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from mocha.core.config import Config, base_type, field_types, is_bool

# Annotations typer sees; values stay strings (or None when not given) and the config coerces them.
_STR = Optional[str]  # noqa: UP045 — typer needs a real typing object here
_BOOL = Optional[bool]  # noqa: UP045


@dataclass
class CommandSpec:
    """One generated verb: its words (`("teacher", "extract")`), config class and the function it runs."""

    words: tuple[str, ...]
    config: type[Config]
    run: Callable[[Any], Any]

    def build(self, given: dict[str, Any]) -> Config:
        return self.config.from_kwargs(**given)


# words → spec, filled as verbs register; the CLI reads it to rewrite `key=value` tokens.
COMMANDS: dict[tuple[str, ...], CommandSpec] = {}


def _metavar(tp: Any) -> str:
    """INT / FLOAT / PATH / TEXT, and A,B for lists (values stay strings until the config coerces them)."""
    inner = base_type(tp)[0]
    if typing.get_origin(inner) in (list, tuple):
        return _metavar(typing.get_args(inner)[0]) + ",..."
    return {int: "INT", float: "FLOAT", Path: "PATH"}.get(inner, "TEXT")


def _shown_default(f: dataclasses.Field) -> str | bool:
    text = f.metadata.get("default_text")
    if text is not None:
        return str(text)
    if f.default is not dataclasses.MISSING:
        d = f.default
        if d is None:
            return False
        return str(d).lower() if isinstance(d, bool) else str(d)
    if f.default_factory is not dataclasses.MISSING:
        return ",".join(map(str, f.default_factory())) or False
    return "required"


def command(
    group: typer.Typer,
    name: str,
    config: type[Config],
    run: Callable[[Any], Any],
    *,
    words: tuple[str, ...] | None = None,
    help: str | None = None,
) -> CommandSpec:
    """Register `name` on `group` with one option per CLI field of `config`; it calls `run(config(...))`.

    `words` are the full command words (default `(name,)`; `("teacher", "extract")` for a sub-verb).
    """
    spec = CommandSpec(words or (name,), config, run)
    config.verb = " ".join(spec.words)
    COMMANDS[spec.words] = spec
    types_ = field_types(config)
    params: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}
    positional: str | None = None
    for f in dataclasses.fields(config):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        shown = _shown_default(f)
        if meta.get("positional"):
            positional = f.name
            arg = f"{f.name}_arg"
            params.append(inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=_STR,
                                            default=typer.Argument(None, metavar=f.name.upper(), show_default=False,
                                                                   help=f"same as {flag}")))
            annotations[arg] = _STR
        if is_bool(types_[f.name]):
            info = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=meta.get("help", ""), show_default=shown)
            ann: Any = _BOOL
        else:
            info = typer.Option(None, flag, help=meta.get("help", ""), show_default=shown,
                                metavar=_metavar(types_[f.name]))
            ann = _STR
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=ann))
        annotations[f.name] = ann

    def cmd(**kwargs: Any) -> Any:
        if positional is not None:
            arg = kwargs.pop(f"{positional}_arg", None)
            if arg is not None:
                if kwargs.get(positional) is not None:
                    from mocha.errors import ConfigError

                    raise ConfigError(f"{positional}: given twice (as the positional argument and as an option)")
                kwargs[positional] = arg
        given = {k: v for k, v in kwargs.items() if v is not None}
        return spec.run(spec.build(given))

    params.sort(key=lambda p: p.kind)  # positional arguments first
    cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cmd.__annotations__ = annotations
    cmd.__doc__ = help or inspect.cleandoc(config.__doc__ or "")
    cmd.__name__ = f"{'_'.join(spec.words)}_cmd".replace("-", "_")
    group.command(name)(cmd)
    return spec
