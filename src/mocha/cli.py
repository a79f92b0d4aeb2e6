"""The one `mocha` command. Each stage registers its verbs from its own `cli` module.

Arguments may be given ultralytics-style (`mocha distill data=world.yaml epochs=3`) or as options
(`--data world.yaml --epochs 3`); `key=value` tokens are rewritten to `--key value` before parsing.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

import typer

from mocha.core.config import parse_bool
from mocha.core.registry import unknown_message
from mocha.errors import ConfigError, MochaError

app = typer.Typer(
    name="mocha",
    help="MOCHA: few-shot personalized object detection (YOLO student distilled from a VLM teacher).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """MOCHA: few-shot personalized object detection (YOLO student distilled from a VLM teacher)."""


# Modules that define `register(app)`; one per stage so each owns its verbs.
VERB_MODULES = [
    "mocha.bench.cli",
    "mocha.student.cli",
    "mocha.data.world.cli",
    "mocha.data.cli",
    "mocha.teacher.cli",
    "mocha.distill.cli",
    "mocha.evaluate.cli",
    "mocha.personalize.cli",
    "mocha.track.cli",
    "mocha.export.cli",
    "mocha.serve.cli",
    "mocha.demo.cli",
]

for _name in VERB_MODULES:
    importlib.import_module(_name).register(app)

_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.S)


def resolve_command(argv: list[str]) -> tuple[tuple[str, ...], Any] | None:
    """(words, click command) named by the leading words of `argv` (`teacher extract ...`), if any."""
    cmd: Any = typer.main.get_command(app)  # typer ships its own click copy: groups are told by `.commands`
    words: list[str] = []
    for tok in argv:
        if tok.startswith("-") or _KV.match(tok) or not hasattr(cmd, "commands"):
            break
        sub = cmd.commands.get(tok)
        if sub is None:
            break
        cmd, words = sub, [*words, tok]
    return (tuple(words), cmd) if words and not hasattr(cmd, "commands") else None


def rewrite_argv(argv: list[str]) -> list[str]:
    """Turn `key=value` tokens into `--key value` (underscores become dashes).

    The verb's own options decide: an unknown key is refused with the closest valid one suggested, and a bool
    flag's `key=true|false` becomes `--key` / `--no-key`.
    """
    found = resolve_command(argv)
    options: dict[str, bool] = {}  # option key → is a flag
    if found is not None:
        for param in found[1].params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    options[opt[2:].replace("-", "_")] = bool(getattr(param, "is_flag", False))
    out: list[str] = []
    for tok in argv:
        m = _KV.match(tok)
        if not m:
            out.append(tok)
            continue
        key, value = m.group(1).replace("-", "_"), m.group(2)
        if found is not None and key not in options:
            where = f" for `mocha {' '.join(found[0])}`"
            raise ConfigError(unknown_message("option", key, sorted(k for k in options if k != "help"), where))
        flag = key.replace("_", "-")
        if options.get(key):
            out.append(f"--{flag}" if parse_bool(value, key) else f"--no-{flag}")
        else:
            out.extend([f"--{flag}", value])
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mocha` console script."""
    try:
        args = rewrite_argv(list(sys.argv[1:] if argv is None else argv))
        rc = app(args=args, prog_name="mocha", standalone_mode=False)
        if isinstance(rc, int) and rc:
            raise SystemExit(rc)
    except MochaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        raise SystemExit(130) from None
    except Exception as exc:  # click usage errors carry their own exit code
        if isinstance(exc, _click_exceptions()):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


def _click_exceptions() -> tuple[type, ...]:
    """Usage-error classes: typer ships its own copy of click (typer._click) besides the click package."""
    import click

    kinds: list[type] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException

        kinds.append(TyperClickException)
    except ImportError:
        pass
    return tuple(kinds)


if __name__ == "__main__":
    main()
