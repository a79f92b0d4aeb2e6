"""Every ```python and ```bash block of README.md, CONTRIBUTING.md and docs/*.md runs, on the tiny world.

One test per block (id `file:line` of its opening fence), so a snippet broken by an API change names itself.
Blocks run in a fresh copy of a prepared folder; an HTML comment right before the fence can choose it or
skip the block (CONTRIBUTING.md, "Docs and snippets", is the user-facing description):

    <!-- snippet: setup=store -->
    <!-- snippet: skip reason="needs the LLaVA weights" -->

Setups (each built once per session, then copied per block):
- `workspace` (default): the docs' placeholder names, real files of the tiny world —
  `world/` (`mocha world generate size=tiny`), `world.yaml` and `my.yaml` (that world's dataset YAML),
  `mug1.jpg` `mug2.jpg` `mug3.jpg` (views of one personal mug), `kitchen.jpg` and `photos/` (other personal
  images), `clip.mp4` (a video of those photos),
  `runs/demo/bundle` = `runs/distill/a/best` (a random-weight bundle over the world's classes whose
  detector head is made confident, so default thresholds find boxes), `runs/export/a` (its ONNX export).
- `store`: the workspace plus `store/`, the built-in teacher's embedding store of the tiny world.
- `checkout`: the repository root itself (read-only commands such as ruff or one test file).
- `empty`: an empty folder.

Python blocks run in a fresh interpreter (cwd = the folder), bash blocks line by line (a trailing `\\` continues a
line) with the venv's `mocha`, `python` and `torchrun` first on PATH; a failing line is reported with its
output. Skips are for what cannot run here (real weights, network, the whole demo) and must name why.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")])
SETUPS = ("workspace", "store", "checkout", "empty")
MAX_SKIPS = 4  # real-weight / network / whole-demo commands only; raise it only with a reason in the docs

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*snippet:(.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    setup: str = "workspace"
    skip: str | None = None  # the reason, when skipped

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def parse_directive(text: str, where: str) -> dict[str, str]:
    """`skip reason="..."` / `setup=name` → {"skip": reason, "setup": name}; anything else is an error."""
    out: dict[str, str] = {}
    for tok in shlex.split(text):
        key, _, value = tok.partition("=")
        if key == "skip" and not value:
            out["skip"] = ""
        elif key in ("reason", "setup") and value:
            out[key] = value
        else:
            raise ValueError(f"{where}: unknown snippet directive {tok!r} (use setup=<{'|'.join(SETUPS)}> or "
                             'skip reason="...")')
    if "setup" in out and out["setup"] not in SETUPS:
        raise ValueError(f"{where}: unknown setup {out['setup']!r}; one of {', '.join(SETUPS)}")
    if "skip" in out:
        out["skip"] = out.pop("reason", "")
    elif "reason" in out:
        raise ValueError(f"{where}: reason= belongs to skip")
    return out


def parse_blocks(path: Path) -> list[Block]:
    """The python/bash fenced blocks of a Markdown file (indented fences in list items included)."""
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1  # the closing fence
        if lang not in ("python", "bash"):
            continue
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        d = _DIRECTIVE.match(lines[j]) if j >= 0 else None
        opts = parse_directive(d.group(1), f"{rel}:{j + 1}") if d else {}
        blocks.append(Block(rel, start + 1, lang, "\n".join(body) + "\n", opts.get("setup", "workspace"),
                            opts.get("skip")))
    return blocks


BLOCKS = [b for f in DOC_FILES if f.is_file() for b in parse_blocks(f)]


# ----------------------------------------------------------------------------------------------- setups
def _confident_bundle(path: Path, names: list[str]) -> Path:
    """A random-weight bundle whose class logits are raised, so default thresholds (conf 0.25) see boxes."""
    import torch

    from mocha.models.bundle import save_bundle
    from mocha.models.detector import Student
    from mocha.models.translator import Translator

    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=names).eval()
    with torch.no_grad():
        for branch in student.model.model[-1].cv3:  # Detect head: the last conv of each class branch
            branch[-1].bias.fill_(2.0)
    return save_bundle(path, student, Translator(student.region_dim, 32).eval(), None, {"imgsz": 128, "seed": 0})


def _build_workspace(root: Path) -> None:
    import yaml
    from PIL import Image

    from mocha.cli import main

    # through the documented commands, so the fixture follows the CLI the docs show
    main(["world", "generate", f"out={root / 'world'}", "size=tiny", "seed=0"])
    data = yaml.safe_load((root / "world" / "mochaworld.yaml").read_text())
    data["root"] = "world"  # the YAML's paths are relative to its folder; these copies sit one level up
    for name in ("world.yaml", "my.yaml"):
        (root / name).write_text(yaml.safe_dump(data, sort_keys=False))
    personal = sorted((root / "world/personal/images").iterdir())
    mugs = [p for p in personal if p.name.startswith("p0008_")][:3]  # instance 8: the first personal mug
    others = [p for p in personal if p not in mugs]
    (root / "photos").mkdir()
    named = [f"mug{k}.jpg" for k in range(1, len(mugs) + 1)] + ["kitchen.jpg"]
    named += [f"photos/{p.name}" for p in others[1:4]]
    for src, dest in zip([*mugs, *others[:4]], named, strict=True):
        # photo-sized (the world renders 112 px), so the docs' example boxes fit inside
        Image.open(src).resize((320, 320), Image.BILINEAR).save(root / dest, quality=95)
    _write_clip(root / "clip.mp4", [root / n for n in named])
    bundle = _confident_bundle(root / "runs/demo/bundle", data["names"])
    shutil.copytree(bundle, root / "runs/distill/a/best")
    main(["export", f"bundle={bundle}", "format=onnx", f"out={root / 'runs/export/a'}"])


def _write_clip(path: Path, frames: list[Path]) -> None:
    """A short video of the workspace photos (the docs' `clip.mp4`)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (320, 320))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()


def _build_store(root: Path) -> None:
    from mocha.cli import main

    main(["teacher", "extract", f"data={root / 'world.yaml'}", f"out={root / 'store'}", "teacher=builtin"])


class Setups:
    """Prepared folders, each built once per session on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[str, Path] = {}

    def template(self, name: str) -> Path:
        if name not in self.built:
            folder = self.base / name
            if name == "store":
                shutil.copytree(self.template("workspace"), folder)
                _build_store(folder)
            else:
                folder.mkdir()
                _build_workspace(folder)
            self.built[name] = folder
        return self.built[name]

    def folder(self, name: str, tmp_path: Path) -> Path:
        if name == "checkout":
            return ROOT
        work = tmp_path / "work"
        if name == "empty":
            work.mkdir()
        else:
            shutil.copytree(self.template(name), work)
        return work


@pytest.fixture(scope="session")
def setups(tmp_path_factory: pytest.TempPathFactory) -> Setups:
    return Setups(tmp_path_factory.mktemp("snippets"))


# ----------------------------------------------------------------------------------------------- runners
def bash_commands(code: str) -> list[str]:
    """One command per line; `\\` at the end of a line continues it; blank and comment lines are dropped."""
    out: list[str] = []
    pending = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        cmd = (pending + line.strip()).strip()
        pending = ""
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
    return out


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), PYTHONPATH=str(ROOT / "src"),
                OMP_NUM_THREADS="1")


def _fail(block: Block, what: str, cwd: Path, proc: subprocess.CompletedProcess) -> None:
    pytest.fail(f"{block.id}: {what} exited {proc.returncode} in {cwd}\n--- stdout\n{proc.stdout[-3000:]}"
                f"\n--- stderr\n{proc.stderr[-4000:]}", pytrace=False)


def run_bash(block: Block, cwd: Path, env: dict[str, str]) -> None:
    for cmd in bash_commands(block.code):
        proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + cmd], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0:
            _fail(block, f"`{cmd}`", cwd, proc)


def run_python(block: Block, cwd: Path, env: dict[str, str], scratch: Path) -> None:
    """A fresh interpreter per block (no state leaks between blocks or into the test process). The script
    keeps the Markdown file's name and line numbers, so a traceback points into the doc."""
    script = scratch / block.file
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("\n" * block.line + block.code)
    proc = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        _fail(block, "the block", cwd, proc)


@pytest.mark.slow  # one CLI process per line: about 3 minutes for all blocks on 2 busy cores
@pytest.mark.timeout(900)  # the first block also builds the session's setups (world, store, bundle, export)
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None], ids=lambda b: b.id)
def test_snippet_runs(block: Block, setups: Setups, tmp_path: Path) -> None:
    cwd = setups.folder(block.setup, tmp_path)
    if block.lang == "bash":
        run_bash(block, cwd, _env())
    else:
        run_python(block, cwd, _env(), tmp_path / "script")


def test_skipped_snippets_are_few_and_say_why() -> None:
    skipped = [b for b in BLOCKS if b.skip is not None]
    listing = "\n".join(f"{b.id}: {b.skip}" for b in skipped)
    print(f"skipped snippets ({len(skipped)}):\n{listing}")
    assert all(len(b.skip.strip()) >= 10 for b in skipped), f"every skip names its reason:\n{listing}"
    assert len(skipped) <= MAX_SKIPS, f"too many skipped snippets (> {MAX_SKIPS}):\n{listing}"


def test_the_parser_finds_fences_directives_and_continuations(tmp_path: Path) -> None:
    doc = tmp_path / "probe.md"
    doc.write_text('Text\n\n<!-- snippet: skip reason="needs real weights" -->\n```bash\nmocha a \\\n  b=1\n```\n\n'
                   "- item:\n\n  ```python\n  x = 1\n  ```\n\n```yaml\nnot: run\n```\n"
                   "<!-- snippet: setup=store -->\n\n```bash\n# comment\nmocha c\n```\n")
    blocks = parse_blocks(doc)
    assert [(b.line, b.lang, b.setup, b.skip) for b in blocks] == [
        (4, "bash", "workspace", "needs real weights"), (11, "python", "workspace", None), (20, "bash", "store", None)]
    assert blocks[1].code == "x = 1\n"
    assert bash_commands(blocks[0].code) == ["mocha a b=1"] and bash_commands(blocks[2].code) == ["mocha c"]
    with pytest.raises(ValueError, match="unknown snippet directive 'sertup=x'"):
        parse_directive("sertup=x", "f.md:1")
    with pytest.raises(ValueError, match="unknown setup 'nope'"):
        parse_directive("setup=nope", "f.md:1")


def test_every_doc_has_its_snippets_collected() -> None:
    # a parser regression must not silently turn the suite green by finding nothing
    per_file = {f.relative_to(ROOT).as_posix(): 0 for f in DOC_FILES if f.is_file()}
    for b in BLOCKS:
        per_file[b.file] += 1
    fences = {f: sum(1 for line in (ROOT / f).read_text().splitlines()
                     if re.match(r"^\s*```(python|bash)\s*$", line)) for f in per_file}
    assert per_file == fences and sum(per_file.values()) >= 8


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", [f for f in DOC_FILES if f.is_file()], ids=lambda f: f.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository(doc: Path) -> None:
    """No link leaves the repository (no ../shared, no web page): relative links resolve to files in it."""
    text = doc.read_text()
    assert "../shared" not in text, f"{doc.name} points outside the repository (../shared); link docs/method.md"
    bad = []
    for target in _LINK.findall(text):
        path = target.split("#", 1)[0]
        if not path:
            continue  # an anchor in the same file
        resolved = (doc.parent / path).resolve()
        if "://" in target or not resolved.is_relative_to(ROOT) or not resolved.exists():
            bad.append(target)
    assert not bad, f"{doc.name}: links outside the repository or to missing files: {bad}"
