"""The one run-folder policy of every verb that writes a run: `<project>/<name>/`.

- the folder is new → use it;
- it exists and `exist_ok` → reuse it (the verb says what reuse means: overwrite files, or start over);
- it exists otherwise → the next free `<name>2`, `<name>3`, ... (ultralytics' `increment_path`), so two runs
  never mix silently. `resume` verbs pass `exist_ok=True` for the folder they continue.
"""

from __future__ import annotations

from pathlib import Path


def run_dir(project: str | Path, name: str, exist_ok: bool = False, mkdir: bool = False) -> Path:
    """`<project>/<name>`, or the next free `<name>N` (N = 2, 3, ...) when it exists and not `exist_ok`."""
    base = Path(project) / name
    path = base
    if path.exists() and not exist_ok:
        n = 2
        while (path := base.with_name(f"{base.name}{n}")).exists():
            n += 1
    if mkdir:
        path.mkdir(parents=True, exist_ok=True)
    return path


def unique_stem(stem: str, used: set[str]) -> str:
    """`stem`, or `stem_2`, `stem_3`, ... when already in `used` (one output name per input of a run); adds it."""
    name, i = stem, 2
    while name in used:
        name, i = f"{stem}_{i}", i + 1
    used.add(name)
    return name


def resolve_artifact(path: str | Path, marker: str) -> Path:
    """The folder holding `marker` (e.g. "bundle.json", "student.safetensors") for a path a user gives.

    Accepts the folder itself, the marker file, or a run folder whose `best/` holds it (a distill run), so every
    verb resolves "run folder → best/ → weights" the same way. Returns the path unchanged when none applies
    (the loader then names what is missing).
    """
    p = Path(path)
    if p.is_file() and p.name == marker:
        return p.parent
    if p.is_dir() and not (p / marker).exists() and (p / "best" / marker).exists():
        return p / "best"
    return p
