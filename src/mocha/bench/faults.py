"""`mocha bench faults`: fuzzed bad input, SIGKILL at random points of each long job, a killed torchrun rank, and
a full disk — each with the figure of what survived (docs/reliability.md).

Kill points: the job runs as a subprocess (its own process group) and is SIGKILLed at a time drawn from a seeded
RNG within the duration of an uninterrupted reference run; the same command (distill: `resume=true`) is then
rerun to the end and its artifacts compared with the reference's (store digest, weight digest, gallery rows,
ONNX bytes, report numbers). Disk full: the write path raises ENOSPC half-way (store chunks, bundle saves), or
the process may not grow a file (RLIMIT_FSIZE: gallery commits in SQLite, which Python cannot intercept).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mocha.bench.core import BenchResult

KILL_WINDOW = (0.15, 0.9)  # kill between these fractions of the reference run's wall time
RANK_KILL_LIMIT_S = 60.0


# ---------------------------------------------------------------------------------------------- subprocesses
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    return env


def mocha_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mocha.cli", *args]


def run_to_end(cmd: list[str], cwd: Path, timeout: float = 1800) -> tuple[int, float, str]:
    """(return code, seconds, output tail) of a command run to completion."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    return p.returncode, time.perf_counter() - t0, (p.stdout + p.stderr)[-3000:]


def run_and_kill(cmd: list[str], cwd: Path, at_s: float, armed: Callable[[], bool] | None = None) -> bool:
    """Start `cmd`, SIGKILL its whole process group after `at_s` seconds (counted from when `armed()` first holds,
    when given); False when it ended before that."""
    p = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    while armed is not None and p.poll() is None and not armed():
        time.sleep(0.05)
    try:
        p.wait(timeout=at_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- fingerprints
def store_fingerprint(store: Path) -> dict[str, Any]:
    """Digest of every entry (keys + fp16 vectors) and of each split's key list — not chunk file names."""
    from mocha.teacher.store import EmbeddingStore

    s = EmbeddingStore.open(store)
    splits = {n: hashlib.sha256(b"".join(s.split_keys(n)[0])).hexdigest()[:16] for n in s.splits()}
    return {"entries": len(s), "digest": s.digest(), "splits": splits}


def weights_fingerprint(bundle: Path) -> str:
    """Digest of the student and translator tensors (the bundle's config holds paths, which differ per run)."""
    from mocha.models.bundle import load_bundle
    from mocha.models.digest import tensors_digest

    b = load_bundle(bundle)
    return tensors_digest([b.student.weights_state(), b.translator.state_dict()])[:16]


def gallery_fingerprint(path: Path) -> list[Any]:
    """Instances and supports without their dates."""
    from mocha.personalize.gallery import Gallery

    with Gallery(path) as g:
        return [[r.id, r.name, r.coarse, r.shots, hashlib.sha256(r.prototype.tobytes()).hexdigest()[:16],
                 [[s.source, s.sha256, s.box, s.box_source, hashlib.sha256(s.embedding.tobytes()).hexdigest()[:16]]
                  for s in r.supports]] for r in g.instances(supports=True)]


def files_fingerprint(folder: Path, pattern: str = "*.onnx") -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(folder.glob(pattern))}


MEASURED = ("ms_per_image", "memory_mb")  # report columns measured on the machine, not computed from the data


def report_fingerprint(out: Path) -> dict[str, Any]:
    """The demo's report numbers (mAP, accuracy per method and shot count; the probe), without times/memory."""
    report = json.loads((out / "report.json").read_text())
    results = {shots: {method: {k: v for k, v in row.items() if not k.endswith(MEASURED)}
                       for method, row in per.items()} for shots, per in report["results"].items()}
    return {"results": results, "probe": report["probe"]}


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """What the kill scenarios run on: the tiny world and the artifacts of one uninterrupted tiny demo."""

    work: Path
    demo_args: list[str]
    demo_seconds: float
    data: Path
    student: Path
    store: Path
    pca: Path
    bundle: Path
    images: list[Path] = field(default_factory=list)


DEMO_ARGS = ["size=tiny", "pretrain_epochs=1", "epochs=2", "det_every=2", "dim=8", "episodes=2", "probe_episodes=3",
             "imgsz=64", "progress=false"]  # the tiny world of tests/test_demo.py
DISTILL_ARGS = ["epochs=4", "det_every=2", "imgsz=64", "progress=false", "tensorboard=false", "device=cpu"]


def prepare(work: Path) -> Inputs:
    """Run the tiny demo once (the reference of the demo kill points) and collect its artifacts."""
    out = work / "demo-ref" / "demo"  # also the reference of the demo kill points (see `kill_points`)
    out.parent.mkdir(parents=True)
    rc, secs, tail = run_to_end(mocha_cmd("demo", *DEMO_ARGS, f"out={out}"), out.parent)
    if rc:
        raise RuntimeError(f"reference demo failed ({rc}):\n{tail}")
    stages = out / "stages"

    def one(pattern: str) -> Path:
        found = sorted(stages.glob(pattern))
        if not found:
            raise RuntimeError(f"{stages}: no {pattern}")
        return found[0]

    data = one("world-*/world/*.yaml")
    student = one("student-*/**/*.safetensors")
    from mocha.data.dataset import load_dataset
    from mocha.data.records import read_split

    recs = read_split(load_dataset(data), "personal")
    return Inputs(work, DEMO_ARGS, secs, data, student, one("extract-*/store"), one("pca-*/pca.safetensors"),
                  out / "bundle", [r.image for r in recs[:6]])


# ---------------------------------------------------------------------------------------------- kill scenarios
@dataclass
class Scenario:
    """A job, how to rerun it after a kill, and what must come out identical."""

    name: str
    command: Callable[[Path], list[str]]  # folder → the job
    fingerprint: Callable[[Path], Any]
    rerun: Callable[[Path], list[str]] | None = None  # default: the same command
    checkpoint: str | None = None  # a file the job writes mid-way (kills after it test resuming)


def scenarios(inp: Inputs) -> dict[str, Scenario]:
    def extract(d: Path) -> list[str]:
        return mocha_cmd("teacher", "extract", f"data={inp.data}", f"out={d / 'store'}", "split=base_train,personal",
                         "flush_every=16", "progress=false")

    def distill(d: Path) -> list[str]:
        return mocha_cmd("distill", f"data={inp.data}", f"store={inp.store}", f"pca={inp.pca}",
                         f"student={inp.student}", f"project={d}", "name=run", *DISTILL_ARGS)

    def distill_rerun(d: Path) -> list[str]:
        if (d / "run" / "latest" / "bundle.json").is_file():
            return mocha_cmd("distill", f"project={d}", "name=run", "resume=true", "progress=false", "device=cpu")
        return [*distill(d), "exist_ok=true"]  # killed before the first checkpoint: start over

    def enroll(d: Path) -> list[str]:
        return [sys.executable, "-m", "mocha.bench.faults", "enroll", str(inp.bundle), str(d / "me.gallery"),
                *map(str, inp.images)]

    def export(d: Path) -> list[str]:
        return mocha_cmd("export", f"bundle={inp.bundle}", f"out={d / 'onnx'}", "imgsz=64")

    def demo(d: Path) -> list[str]:
        return mocha_cmd("demo", *inp.demo_args, f"out={d / 'demo'}")

    return {
        "teacher extract": Scenario("teacher extract", extract, lambda d: store_fingerprint(d / "store")),
        "distill": Scenario("distill", distill, lambda d: weights_fingerprint(d / "run" / "best"), distill_rerun,
                            "run/latest/bundle.json"),
        "enroll": Scenario("enroll", enroll, lambda d: gallery_fingerprint(d / "me.gallery")),
        "export": Scenario("export", export, lambda d: files_fingerprint(d / "onnx")),
        "demo": Scenario("demo", demo, lambda d: {**report_fingerprint(d / "demo"),
                                                  "weights": weights_fingerprint(d / "demo" / "bundle")}),
    }


def enroll_plan(bundle: str, gallery: str, images: list[str]) -> None:
    """Enrol one instance per image pair (user box = the whole image); skip names already enrolled (a rerun)."""
    from mocha.data.images import image_size
    from mocha.personalize.personalizer import Personalizer

    with Personalizer.load(bundle, gallery, device="cpu") as p:
        for k in range(0, len(images) - 1, 2):
            name = f"thing-{k // 2}"
            if name in p.gallery:
                continue
            boxes = [[0, 0, *image_size(f)] for f in images[k:k + 2]]
            p.enroll(name, images[k:k + 2], boxes=boxes, coarse=k // 2 % len(p.names))


@dataclass
class KillPoint:
    scenario: str
    kill_at_s: float
    killed: bool
    recovered: bool
    detail: str = ""
    left: str = ""  # what the kill left half-written (hidden temp files / partial stage folders)
    rerun: str = ""  # how it was rerun

    def row(self) -> dict[str, Any]:
        return {"kind": f"kill: {self.scenario}", "kill_at_s": round(self.kill_at_s, 1), "killed": self.killed,
                "recovered": self.recovered, "left": self.left, "rerun": self.rerun, "detail": self.detail[-160:]}


def _half_written(d: Path) -> str:
    names = sorted({p.name.split(".tmp")[0].split(".partial")[0].lstrip(".") or p.name
                    for p in d.rglob(".*") if p.name.endswith((".tmp", ".partial")) or ".tmp" in p.name})
    return ", ".join(names[:4]) or "-"


def _rerun_words(first: list[str], again: list[str]) -> str:
    extra = [w for w in again if w not in first and "=" in w and not w.startswith(("data=", "store=", "pca="))]
    return " ".join(extra) or "same command"


def kill_points(sc: Scenario, work: Path, kills: int, rng: random.Random,
                ref_seconds: float | None = None) -> list[KillPoint]:
    """One reference run (`ref_seconds`: already done, in `<work>/<name>-ref`), then `kills` runs killed at random
    times, each rerun and compared with the reference."""
    ref = work / f"{sc.name.replace(' ', '-')}-ref"
    if ref_seconds is None:
        ref.mkdir(parents=True)
        rc, secs, tail = run_to_end(sc.command(ref), ref)
        if rc:
            return [KillPoint(sc.name, 0.0, False, False, f"reference run failed ({rc}): {tail}")]
    else:
        secs = ref_seconds
    want = sc.fingerprint(ref)
    out = []
    for k in range(kills):
        d = work / f"{sc.name.replace(' ', '-')}-kill{k}"
        # every other kill of a job with checkpoints lands after its first one (the resume path), within 2 s
        armed = sc.checkpoint is not None and k % 2 == 1
        at = rng.uniform(0.0, 2.0) if armed else rng.uniform(*KILL_WINDOW) * secs
        for _ in range(4):  # the job ran faster than the reference (a less loaded machine): kill earlier
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            ready = (lambda d=d: (d / sc.checkpoint).is_file()) if armed else None
            killed = run_and_kill(sc.command(d), d, at, ready)
            if killed:
                break
            at *= 0.6
        left = _half_written(d)
        again = (sc.rerun or sc.command)(d)
        how = _rerun_words(sc.command(d), again)
        rc, _, tail = run_to_end(again, d)
        if rc:
            out.append(KillPoint(sc.name, at, killed, False, f"rerun failed ({rc}): {tail}", left, how))
            continue
        got = sc.fingerprint(d)
        out.append(KillPoint(sc.name, at, killed, got == want, "" if got == want else f"{got} != {want}", left, how))
    return out


# ---------------------------------------------------------------------------------------------- rank kill
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def rank_kill(inp: Inputs, work: Path, rng: random.Random) -> dict[str, Any]:
    """torchrun, 2 CPU ranks (gloo): SIGKILL rank 1 once training runs; time until the job ends; resume → weights
    equal to an uninterrupted 2-rank run's."""
    def cmd(d: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                "-m", "mocha.cli", "distill", f"data={inp.data}", f"store={inp.store}", f"pca={inp.pca}",
                f"student={inp.student}", f"project={d}", "name=run", *DISTILL_ARGS, *extra]

    ref = work / "rank-ref"
    rc, ref_s, tail = run_to_end(cmd(ref), work)
    if rc:
        return {"ok": False, "detail": f"reference 2-rank run failed ({rc}): {tail}"}
    want = weights_fingerprint(ref / "run" / "best")
    d = work / "rank-kill"
    log = (work / "rank-kill.log").open("w+")
    p = subprocess.Popen(cmd(d), cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # wait for the first epoch's checkpoint (training is running in both ranks), then a seeded extra delay
    t0 = time.perf_counter()
    while p.poll() is None and not (d / "run" / "latest" / "bundle.json").is_file() and time.perf_counter() - t0 < 900:
        time.sleep(0.2)
    time.sleep(rng.uniform(0.0, 0.3) * ref_s / 2)
    workers = _children(p.pid)
    if p.poll() is not None or len(workers) < 2:
        p.wait()
        return {"ok": False, "detail": f"job ended before the kill (rc {p.returncode}, workers {workers})"}
    os.kill(sorted(workers)[-1], signal.SIGKILL)
    t_kill = time.perf_counter()
    try:
        p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    exit_s = time.perf_counter() - t_kill
    log.seek(0)
    text = log.read()
    log.close()
    message = next((ln.strip() for ln in text.splitlines() if "exitcode" in ln or "Signal 9" in ln), "")
    rc2, _, tail2 = run_to_end(cmd(d, "resume=true"), work)
    got = weights_fingerprint(d / "run" / "best") if rc2 == 0 else None
    return {"ok": exit_s <= RANK_KILL_LIMIT_S and p.returncode != 0 and got == want, "exit_s": round(exit_s, 1),
            "job_rc": p.returncode, "message": message, "resumed_rc": rc2, "same_weights": got == want,
            "detail": "" if got == want else f"{got} != {want}; {tail2[-300:]}"}


# ---------------------------------------------------------------------------------------------- disk full
def _enospc_after_half(real: Callable[..., Any]) -> Callable[..., Any]:
    """A safetensors `save_file` that writes half the file, then fails as a full disk would."""
    def save_file(tensors: Any, filename: str, metadata: Any = None) -> None:
        real(tensors, filename, metadata=metadata)
        size = os.path.getsize(filename)
        with open(filename, "r+b") as f:
            f.truncate(size // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    return save_file


def disk_full_store(work: Path) -> dict[str, Any]:
    import torch

    import mocha.teacher.store as store_mod
    from mocha.errors import MochaError
    from mocha.teacher.store import EmbeddingStore, region_key

    path = work / "store"
    s = EmbeddingStore.create_or_open(path, "t", "k" * 16, 4, {})
    keys = [region_key("0" * 64, (0.5, 0.5, 0.1 * i + 0.1, 0.2), "mug", s.teacher_key) for i in range(8)]
    w = s.writer(flush_every=4)
    w.add(keys[:4], torch.ones(4, 4))
    before = store_fingerprint(path)
    real = store_mod.save_file
    store_mod.save_file = _enospc_after_half(real)
    try:
        w.add(keys[4:], torch.zeros(4, 4))
        message = ""
    except MochaError as exc:
        message = str(exc)
    finally:
        store_mod.save_file = real
    after = store_fingerprint(path)
    leftovers = [p.name for p in (path / "chunks").iterdir() if p.name.startswith(".")]
    return {"artifact": "store chunk", "message": message,
            "ok": bool(message) and str(path) in message and after == before and not leftovers}


def disk_full_bundle(work: Path) -> dict[str, Any]:
    import torch

    import mocha.models.bundle as bundle_mod
    from mocha.errors import MochaError
    from mocha.models.detector import Student
    from mocha.models.translator import Translator

    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=["mug", "ball"])
    translator = Translator(student.region_dim, 8)
    path = bundle_mod.save_bundle(work / "bundle", student, translator, None, {"imgsz": 64})
    before = files_fingerprint(path, "*")
    with torch.no_grad():
        translator.proj.weight.add_(1.0)  # a newer bundle to save over the old one
    import safetensors.torch as st_torch

    real = st_torch.save_file
    st_torch.save_file = _enospc_after_half(real)
    try:
        bundle_mod.save_bundle(path, student, translator, None, {"imgsz": 64})
        message = ""
    except MochaError as exc:
        message = str(exc)
    finally:
        st_torch.save_file = real
    after = files_fingerprint(path, "*")
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    ok = bool(message) and str(path) in message and after == before and not leftovers
    if ok:
        bundle_mod.load_bundle(path)  # still loads
    return {"artifact": "bundle save", "message": message, "ok": ok}


GALLERY_SCRIPT = r"""
import resource, signal, sys
import numpy as np
from mocha.personalize.gallery import Gallery, Support
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
g = Gallery(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # no file may grow past 4 KiB: the WAL cannot be written
try:
    g.add("new", 0, "mug", [Support("x.jpg", "0" * 64, [0, 0, 4, 4], "user", np.ones(8, np.float32))])
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
"""


def disk_full_gallery(work: Path) -> dict[str, Any]:
    import numpy as np

    from mocha.personalize.gallery import Gallery, Support

    path = work / "me.gallery"
    with Gallery.create(path, "0" * 16, None, 8) as g:
        g.add("old", 0, "mug", [Support("a.jpg", "0" * 64, [0, 0, 4, 4], "user", np.zeros(8, np.float32))])
    before = gallery_fingerprint(path)
    p = subprocess.run([sys.executable, "-c", GALLERY_SCRIPT, str(path)], env=_env(), capture_output=True,
                       text=True, timeout=120)
    message = (p.stdout.strip().splitlines() or [""])[-1]
    after = gallery_fingerprint(path)
    ok = message.startswith("ConfigError") and str(path) in message and after == before and p.returncode == 0
    return {"artifact": "gallery commit", "message": message or p.stderr[-300:], "ok": ok}


DISK_FULL = {"store chunk": disk_full_store, "bundle save": disk_full_bundle, "gallery commit": disk_full_gallery}


def disk_full_all(work: Path) -> list[dict[str, Any]]:
    out = []
    for name, fn in DISK_FULL.items():
        d = work / f"diskfull-{name.replace(' ', '-')}"
        d.mkdir(parents=True)
        out.append(fn(d))
    return out


# ---------------------------------------------------------------------------------------------- the bench
def run(out_dir: Path, quick: bool = False, seed: int = 0) -> BenchResult:
    """Fuzz every artifact kind, kill each long job at random points, kill a torchrun rank, fill the disk."""
    try:
        from mocha.bench.fuzz import PROFILES, fuzz_all
    except ModuleNotFoundError as exc:  # hypothesis is a dev dependency
        from mocha.errors import ConfigError

        raise ConfigError(f"mocha bench faults needs {exc.name} (pip install 'hypothesis==6.170.17', or the dev "
                          "extras)") from None

    profile = "small" if quick else "large"
    kills = 1 if quick else 2
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="mocha-faults-"))
    try:
        tallies = fuzz_all(profile, seed=seed, workdir=work)
        rows += [{"kind": f"bad input: {t.kind}", **{k: v for k, v in t.row().items() if k != "kind"}}
                 for t in tallies]
        examples = [x for t in tallies for x in (t.tracebacks + t.hangs + t.modified)][:5]
        inp = prepare(work)
        points: list[KillPoint] = []
        for sc in scenarios(inp).values():
            demo = sc.name == "demo"  # its reference is the run `prepare` made
            points += kill_points(sc, work, 1 if demo else kills, rng, inp.demo_seconds if demo else None)
        rows += [p.row() for p in points]
        rk = rank_kill(inp, work, rng)
        rows.append({"kind": "kill: torchrun rank 1 of 2", **rk})
        full = disk_full_all(work)
        rows += [{"kind": f"disk full: {f['artifact']}", "ok": f["ok"], "message": f["message"][-160:]} for f in full]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {
        "bad_inputs_tried": sum(t.tried for t in tallies),
        "tracebacks": sum(len(t.tracebacks) for t in tallies),
        "hangs": sum(len(t.hangs) for t in tallies),
        "modified_user_files": sum(len(t.modified) for t in tallies),
        "kill_points": len(points),
        "kill_points_recovered": sum(p.recovered for p in points),
        "kill_points_missed": sum(1 for p in points if not p.recovered),
        "rank_kill_exit_s": rk.get("exit_s"),
        "rank_kill_resumed_same_weights": rk.get("same_weights", False),
        "disk_full_cases": len(full),
        "disk_full_survived": sum(f["ok"] for f in full),
    }
    notes = (f"hypothesis profile {profile!r} ({PROFILES[profile]} cases per kind), seed {seed}; "
             f"kill times uniform in {KILL_WINDOW} of the reference run's wall time (seeded)")
    if examples:
        notes += "; first failures: " + " | ".join(e[-300:] for e in examples)
    targets = {"bad_inputs_tried": ">= 1000", "tracebacks": "<= 0", "hangs": "<= 0", "modified_user_files": "<= 0",
               "kill_points_missed": "<= 0", "rank_kill_exit_s": f"<= {RANK_KILL_LIMIT_S:g}"}
    return BenchResult("faults", rows, summary, targets, notes)


if __name__ == "__main__" and sys.argv[1:2] == ["enroll"]:
    enroll_plan(sys.argv[2], sys.argv[3], sys.argv[4:])
