"""The one `mocha` command. Each stage registers its verbs from its own `cli` module.

Arguments may be given ultralytics-style (`mocha distill data=world.yaml epochs=3`) or as options
(`--data world.yaml --epochs 3`); `key=value` tokens are rewritten to `--key value` before parsing.
"""

from __future__ import annotations

import importlib
import re
import sys

import typer

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


def rewrite_argv(argv: list[str]) -> list[str]:
    """Turn `key=value` tokens into `--key value` (underscores become dashes); booleans become flags."""
    out: list[str] = []
    for tok in argv:
        m = _KV.match(tok)
        if not m:
            out.append(tok)
            continue
        key, value = m.group(1).replace("_", "-"), m.group(2)
        if value.lower() in ("true", "yes", "1") and key in _BOOL_FLAGS:
            out.append(f"--{key}")
        elif value.lower() in ("false", "no", "0") and key in _BOOL_FLAGS:
            out.append(f"--no-{key}")
        else:
            out.extend([f"--{key}", value])
    return out


# Boolean options across verbs that accept key=true/false.
_BOOL_FLAGS = {
    "skip-bad", "overwrite", "fresh", "resume", "save", "append", "extract-missing", "skip-nonfinite",
    "tensorboard", "plots", "cache", "quick", "progress",
}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mocha` console script."""
    args = rewrite_argv(list(sys.argv[1:] if argv is None else argv))
    try:
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
