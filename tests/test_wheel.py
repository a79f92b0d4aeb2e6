"""mocha installs as a package, not only as a checkout: build the wheel, install it outside the checkout, use it.

The wheel must carry every shipped file (src/mocha/assets/), and the installed package must find them through
`importlib.resources`: a user of `pip install git+<repo>` gets the shipped student and a working `mocha`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs in the installed copy: it must be that copy (not the checkout) that answers, hash check included.
CHECK = """
import sys
from pathlib import Path
import mocha
from mocha.demo.run import DemoConfig
from mocha.demo.shipped import shipped_student
site = Path(sys.argv[1]).resolve()
assert Path(mocha.__file__).resolve().is_relative_to(site), mocha.__file__
cfg = DemoConfig()
s = shipped_student(cfg.size, cfg.seed, cfg.imgsz, cfg.pretrain_epochs)
assert s is not None and s.path.resolve().is_relative_to(site), s
print("verified", s.path.name, s.sha256)
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def source_copy(dest: Path) -> Path:
    """The files a wheel is built from, copied: an in-tree build would leave build/ behind, and a stale
    build/lib/ would smuggle deleted files into the wheel."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


@pytest.mark.slow
@pytest.mark.timeout(900)  # a wheel build and a pip install, 300 s each at most
def test_wheel_installs_outside_the_checkout_with_its_shipped_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    src, dist, site, elsewhere = (tmp_path / d for d in ("src-copy", "dist", "site", "elsewhere"))
    src.mkdir()
    elsewhere.mkdir()
    source_copy(src)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        tmp_path, env)
    (wheel,) = dist.glob("mocha-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/mocha/assets").rglob("*") if p.is_file()}
    assert shipped and shipped <= names, f"shipped files missing from the wheel: {sorted(shipped - names)}"
    assert "mocha/cli.py" in names and not any(n.startswith(("tests/", "assets/")) for n in names)

    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(site), str(wheel)],
        tmp_path, env)
    env["PYTHONPATH"] = str(site)  # the installed copy only; the venv still provides the dependencies
    out = run([sys.executable, "-c", CHECK, str(site)], elsewhere, env)
    from mocha.demo.config import DemoConfig

    assert out.startswith(f"verified student-small-s0-256px-{DemoConfig().pretrain_epochs}ep.safetensors")
    assert "Usage: mocha" in run([sys.executable, "-m", "mocha.cli", "--help"], elsewhere, env)
    # the console script of [project.scripts] works too
    assert "Usage: mocha" in run([str(site / "bin" / "mocha"), "--help"], elsewhere, env)
