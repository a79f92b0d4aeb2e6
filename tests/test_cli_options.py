"""Every verb's options come from its config dataclass: walk each verb and each bool option through the CLI.

The run function of every generated verb is swapped for one that records the config it receives, so these
tests check the parsing path the user's command line takes (`key=value`, flags), not the work itself.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import typer

from mocha.cli import app, main, rewrite_argv
from mocha.core.commands import COMMANDS, CommandSpec
from mocha.core.config import base_type, field_types


def leaf_commands() -> list[tuple[str, ...]]:
    """Every verb the `mocha` CLI has, as its words."""
    out: list[tuple[str, ...]] = []

    def walk(cmd, words):
        subs = getattr(cmd, "commands", None)
        if subs is None:
            out.append(tuple(words))
            return
        for name, sub in subs.items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return sorted(out)


def required_args(spec: CommandSpec, tmp_path: Path) -> list[str]:
    """key=value for every required field: an existing file for paths, the first choice, or a plain value."""
    existing = tmp_path / "given.txt"
    existing.write_text("x")
    types_ = field_types(spec.config)
    args = []
    for f in dataclasses.fields(spec.config):
        if not f.metadata.get("cli", True) or f.default is not dataclasses.MISSING:
            continue
        if f.default_factory is not dataclasses.MISSING:
            continue
        inner = base_type(types_[f.name])[0]
        choices = f.metadata.get("choices")
        if callable(choices):
            choices = choices()
        if choices:
            value = str(choices[0])
        elif inner is Path:
            value = str(existing)
        elif inner in (int, float) or typing.get_origin(inner) is list:
            value = "1"
        else:
            value = "x"
        args.append(f"{f.name}={value}")
    return args


GENERATED = sorted(COMMANDS)


@pytest.fixture
def recorded(monkeypatch):
    seen: list = []
    for spec in COMMANDS.values():
        monkeypatch.setattr(spec, "run", lambda cfg: seen.append(cfg))
    return seen


@pytest.mark.parametrize("words", GENERATED, ids=[" ".join(w) for w in GENERATED])
def test_every_bool_option_takes_key_true_and_false(words, recorded, tmp_path):
    spec = COMMANDS[words]
    base = [*words, *required_args(spec, tmp_path)]
    for name in spec.config.bool_options():
        for text, value in (("true", True), ("false", False), ("yes", True), ("0", False)):
            main([*base, f"{name}={text}"])
            assert getattr(recorded[-1], name) is value, (name, text)
        flag = "--" + name.replace("_", "-")
        main([*base, flag])
        assert getattr(recorded[-1], name) is True
        main([*base, "--no-" + flag[2:]])
        assert getattr(recorded[-1], name) is False


@pytest.mark.parametrize("words", GENERATED, ids=[" ".join(w) for w in GENERATED])
def test_cli_call_equals_the_python_call(words, recorded, tmp_path):
    spec = COMMANDS[words]
    args = required_args(spec, tmp_path)
    main([*words, *args])
    kwargs = dict(a.split("=", 1) for a in args)
    assert recorded[-1] == spec.config(**kwargs)
    assert type(recorded[-1]) is spec.config


@pytest.mark.parametrize("words", GENERATED, ids=[" ".join(w) for w in GENERATED])
def test_help_lists_every_option_with_its_help(words, capsys):
    spec = COMMANDS[words]
    main([*words, "--help"])  # click prints the help and returns (standalone_mode=False)
    text = " ".join(capsys.readouterr().out.translate(str.maketrans("", "", "│╭╮╰╯─")).split())
    for f in dataclasses.fields(spec.config):
        if f.metadata.get("cli", True):
            assert "--" + f.name.replace("_", "-") in text
            first_words = " ".join(f.metadata["help"].split()[:3])
            assert first_words in text, (f.name, first_words)


def test_unknown_key_suggests_the_closest(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "episode=3"])
    assert exc.value.code == 2
    assert "unknown option 'episode' for `mocha evaluate`; did you mean 'episodes'?" in capsys.readouterr().err


def test_rewrite_keeps_values_with_equals_and_spaces():
    assert rewrite_argv(["teacher", "extract", "prompt=a=b c", "split=x,y"]) == [
        "teacher", "extract", "--prompt", "a=b c", "--split", "x,y"]
    assert rewrite_argv(["world", "generate", "overwrite=true"]) == ["world", "generate", "--overwrite"]


def test_every_verb_is_generated_from_a_config():
    # a verb hand-written with typer options would bypass the config (its checks, its key suggestions)
    assert leaf_commands() == GENERATED
