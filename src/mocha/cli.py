"""The one `mocha` command. Each stage registers its verbs from its own `cli` module.

Arguments may be given ultralytics-style (`mocha distill data=world.yaml epochs=3`) or as options
(`--data world.yaml --epochs 3`); `key=value` tokens are rewritten to `--key value` before parsing.
"""

from __future__ import annotations

import importlib
import re
import sys

import typer

from mocha.core.commands import COMMANDS, CommandSpec
from mocha.core.config import parse_bool
from mocha.errors import MochaError

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
    "mocha.export.cli",
    "mocha.demo.cli",
]

for _name in VERB_MODULES:
    importlib.import_module(_name).register(app)

_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.S)


def command_spec(argv: list[str]) -> CommandSpec | None:
    """The generated verb named by the leading words of `argv` (`teacher extract ...`), if any."""
    words: list[str] = []
    for tok in argv:
        if tok.startswith("-") or _KV.match(tok):
            break
        words.append(tok)
    for n in range(len(words), 0, -1):
        spec = COMMANDS.get(tuple(words[:n]))
        if spec is not None:
            return spec
    return None


def rewrite_argv(argv: list[str]) -> list[str]:
    """Turn `key=value` tokens into `--key value` (underscores become dashes).

    For a verb generated from a config, an unknown key is refused with the closest valid one suggested, and a
    bool option's `key=true|false` becomes `--key` / `--no-key`.
    """
    spec = command_spec(argv)
    bools = set(spec.config.bool_options()) if spec else set()
    out: list[str] = []
    for tok in argv:
        m = _KV.match(tok)
        if not m:
            out.append(tok)
            continue
        key, value = m.group(1).replace("-", "_"), m.group(2)
        if spec is not None:
            spec.config.check_keys([key])
        flag = key.replace("_", "-")
        if key in bools:
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
