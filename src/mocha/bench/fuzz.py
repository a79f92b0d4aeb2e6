"""Property-based bad input: every artifact kind a user can hand to mocha, fuzzed with `hypothesis`.

Each kind (`TARGETS`) writes one small valid artifact, then every generated case replaces one of its files by
a mutation (random bytes, truncation, bit flips, or a structured edit: wrong types/keys in YAML/JSON, wrong
tensor shapes/dtypes or NaN in safetensors, SQL edits of a gallery) and loads it the way mocha does. A case
passes when the load either succeeds or raises one `MochaError` whose message names the artifact; it fails
as a *traceback* (any other exception, or a message that does not name the file), a *hang* (over the
per-case time limit) or a *modified user file* (a file of the artifact changed by the load). Used by
`tests/test_fuzz_inputs.py` (profile `small`) and `mocha bench faults` (profile `large`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import signal
import sqlite3
import struct
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

from mocha.errors import MochaError

# examples per kind: ≥ 1,000 in all for the bench, a smoke run in the test suite
PROFILES = {"small": 12, "large": 160}
for _name, _n in PROFILES.items():
    settings.register_profile(f"mocha-fuzz-{_name}", max_examples=_n, deadline=None, database=None,
                              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
CASE_SECONDS = 20.0  # per-case limit: a load slower than this counts as a hang (generous: 2 shared cores)


class CaseTimeout(BaseException):  # BaseException: a loader's `except Exception` must not swallow it
    """Raised by the alarm when one case runs past CASE_SECONDS."""


@dataclass
class Artifact:
    """One valid artifact on disk: the files a case may mutate, what its errors must name, and its loader."""

    files: list[Path]  # candidates for mutation
    names: str  # every MochaError message must contain this path (the file, or the artifact folder)
    load: Callable[[], Any]
    root: Path  # the user's files: hashed before and after each case
    structured: dict[str, Callable[[Any, bytes], bytes]] = field(default_factory=dict)  # file suffix → mutator


@dataclass
class Tally:
    """Outcomes of the cases of one kind."""

    kind: str
    tried: int = 0
    loaded: int = 0  # the mutation was still a valid artifact (accepted)
    refused: int = 0  # one MochaError naming the file
    tracebacks: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"kind": self.kind, "tried": self.tried, "loaded": self.loaded, "refused": self.refused,
                "tracebacks": len(self.tracebacks), "hangs": len(self.hangs), "modified": len(self.modified),
                "seconds": round(self.seconds, 1)}


# ---------------------------------------------------------------------------------------------- strategies
WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", "-1", "nan", "../..", "/dev/null", "0" * 40, "mocha-bundle/1"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)


def _node_paths(obj: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _node_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _node_paths(v, (*prefix, i))


def mutate_tree(data: Any, obj: Any) -> Any:
    """One structured edit of a parsed YAML/JSON document: replace a node by a value of a wrong type, delete it,
    add an unknown key, or wrap it in a list."""
    obj = json.loads(json.dumps(obj, default=str))  # a deep copy with plain types
    path = data.draw(st.sampled_from(list(_node_paths(obj))))
    op = data.draw(st.sampled_from(["replace", "delete", "add", "wrap"]))
    if not path:
        return data.draw(WEIRD) if op in ("replace", "delete") else [obj]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if op == "replace":
        parent[key] = data.draw(WEIRD)
    elif op == "delete":
        del parent[key]
    elif op == "wrap":
        parent[key] = [parent[key]]
    elif isinstance(parent[key], dict):
        parent[key][data.draw(st.text(max_size=8))] = data.draw(WEIRD)
    else:
        parent[key] = {"unexpected": parent[key]}
    return obj


def _json_mutator(data: Any, orig: bytes) -> bytes:
    return json.dumps(mutate_tree(data, json.loads(orig)), allow_nan=True).encode()


def _yaml_mutator(data: Any, orig: bytes) -> bytes:
    import yaml

    return yaml.safe_dump(mutate_tree(data, yaml.safe_load(orig)), allow_unicode=True).encode()


def _label_mutator(data: Any, orig: bytes) -> bytes:
    token = st.one_of(st.sampled_from(["0", "1", "2", "7", "-1", "0.5", "0.2", "1.5", "nan", "inf", "-inf", "1e309",
                                       "abc", "0x1", "1,5", "", "\t", "１"]),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr))
    lines = data.draw(st.lists(st.lists(token, max_size=7).map(" ".join), max_size=5))
    keep = orig.decode().splitlines() if data.draw(st.booleans()) else []
    return "\n".join(keep + lines).encode()


def _safetensors_header_mutator(data: Any, orig: bytes) -> bytes:
    """Edit the JSON header (dtypes, shapes, offsets, metadata) and keep the tensor bytes."""
    (n,) = struct.unpack("<Q", orig[:8])
    header = json.loads(orig[8:8 + n])
    new = json.dumps(mutate_tree(data, header), allow_nan=True).encode()
    return struct.pack("<Q", len(new)) + new + orig[8 + n:]


def _safetensors_tensor_mutator(data: Any, orig: bytes) -> bytes:
    """Rewrite the file with one tensor reshaped, re-typed, filled with NaN/inf, dropped, or one extra tensor."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load, save

    tensors = load(orig)
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(orig)
        f.flush()
        with safe_open(f.name, framework="pt") as sf:
            meta = sf.metadata()
    name = data.draw(st.sampled_from(sorted(tensors)))
    op = data.draw(st.sampled_from(["shape", "dtype", "nan", "inf", "drop", "extra", "empty", "meta"]))
    t = tensors[name]
    if op == "shape":
        shape = data.draw(st.lists(st.integers(0, 9), min_size=0, max_size=3))
        tensors[name] = torch.randn(*shape) if shape else torch.tensor(1.0)
    elif op == "dtype":
        dtype = data.draw(st.sampled_from([torch.float16, torch.float64, torch.int64, torch.uint8, torch.bool]))
        tensors[name] = t.to(dtype)
    elif op in ("nan", "inf"):
        t = t.float().clone() if not t.is_floating_point() else t.clone()
        if t.numel():
            t.view(-1)[data.draw(st.integers(0, t.numel() - 1))] = math.nan if op == "nan" else math.inf
        tensors[name] = t
    elif op == "drop":
        del tensors[name]
    elif op == "extra":
        tensors[data.draw(st.text(min_size=1, max_size=6))] = torch.zeros(2)
    elif op == "empty":
        tensors[name] = torch.zeros((0,) + tuple(t.shape[1:]), dtype=t.dtype)
    elif meta:
        key = data.draw(st.sampled_from(sorted(meta)))
        meta = {**meta, key: data.draw(st.text(max_size=20) | st.just("{}") | st.just("[1, 2]"))}
    return save(tensors, metadata=meta)


def _sqlite_mutator(data: Any, orig: bytes) -> bytes:
    """Structured edits of a gallery through SQLite itself: wrong types, bad blobs, missing rows and tables."""
    stmts = [
        ("UPDATE meta SET value = ? WHERE key = 'dim'", WEIRD.map(str)),
        ("DELETE FROM meta WHERE key = ?", st.sampled_from(["format", "dim", "bundle_digest", "next_instance_id"])),
        ("UPDATE meta SET value = ? WHERE key = 'format'", st.text(max_size=10)),
        ("UPDATE instances SET prototype = ?", st.binary(max_size=40)),
        ("UPDATE supports SET embedding = ?", st.binary(max_size=40)),
        ("UPDATE supports SET box = ?", st.text(max_size=12) | st.just("[1, 2]") | st.just('{"a": 1}')),
        ("UPDATE instances SET coarse = ?", WEIRD.map(str)),
        ("UPDATE instances SET shots = ?", WEIRD.map(str)),
        ("UPDATE supports SET instance = ?", st.text(max_size=6)),
        ("UPDATE supports SET det_conf = ?", WEIRD.map(str)),
        ("DROP TABLE ?", st.sampled_from(["supports", "instances", "meta"])),
        ("PRAGMA user_version = ?", st.integers(-2, 6)),
    ]
    sql, arg = data.draw(st.sampled_from(stmts))
    value = data.draw(arg)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.sqlite"
        p.write_bytes(orig)
        con = sqlite3.connect(p, isolation_level=None)
        try:
            if sql.startswith(("DROP", "PRAGMA")):
                con.execute(sql.replace("?", str(value)))
            else:
                con.execute(sql, (value,))
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        return p.read_bytes()


def _image_mutator(data: Any, orig: bytes) -> bytes:
    """A valid image in an unusual mode / format / size (the file suffix stays what it was)."""
    import io

    import numpy as np
    from PIL import Image

    w, h = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    mode = data.draw(st.sampled_from(["1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "CMYK", "I;16"]))
    fmt = data.draw(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode if mode != "I;16" else "I")
    if mode == "I;16":
        im = im.convert("I;16")
    exif = Image.Exif()
    exif[0x0112] = data.draw(st.integers(0, 12))
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, exif=exif.tobytes())
    except (OSError, ValueError, KeyError, TypeError):  # this format cannot hold this mode: plain RGB PNG
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def mutations(data: Any, orig: bytes, structured: Callable[[Any, bytes], bytes] | None) -> tuple[str, bytes]:
    """(mutation kind, new bytes) for one case."""
    kinds = ["random", "truncate", "bitflip", "splice"] + (["structured"] * 4 if structured else [])
    kind = data.draw(st.sampled_from(kinds))
    if kind == "random":
        return kind, data.draw(st.binary(max_size=1024))
    if kind == "truncate":
        return kind, orig[:data.draw(st.integers(0, max(0, len(orig) - 1)))]
    if kind == "bitflip":
        out = bytearray(orig)
        # flips cluster near the start (headers) half the time: that is where parsers branch
        hi = min(len(out) * 8 - 1, 4096 * 8) if data.draw(st.booleans()) else len(out) * 8 - 1
        for bit in data.draw(st.lists(st.integers(0, hi), min_size=1, max_size=8)):
            out[bit // 8] ^= 1 << (bit % 8)
        return kind, bytes(out)
    if kind == "splice":
        start = data.draw(st.integers(0, len(orig)))
        stop = data.draw(st.integers(start, min(len(orig), start + 256)))
        return kind, orig[:start] + data.draw(st.binary(max_size=64)) + orig[stop:]
    assert structured is not None
    return kind, structured(data, orig)


# ---------------------------------------------------------------------------------------------- artifacts
def _tiny_dataset(root: Path) -> Path:
    """One coarse split (2 images) and one instance split (2 instances × 2 images), a 1-shot episode file."""
    import numpy as np
    import yaml
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, rows in (("base", ["0 0.5 0.5 0.4 0.4\n", "1 0.3 0.3 0.2 0.2\n"]),
                        ("personal", ["0 0.3 0.5 0.3 0.4\n", "0 0.3 0.5 0.3 0.4\n", "1 0.6 0.5 0.3 0.4\n",
                                      "1 0.6 0.5 0.3 0.4\n"])):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for k, row in enumerate(rows):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / split / "images" /
                                                                                   f"i{k}.png")
            (root / split / "labels" / f"i{k}.txt").write_text(row)
    episodes = {"split": "personal", "shots": 1,
                "episodes": [{"support": {"0": ["i0.png"], "1": ["i2.png"]}, "query": ["i1.png", "i3.png"]}]}
    (root / "episodes.json").write_text(json.dumps(episodes))
    doc = {"format": "mocha-dataset/1", "names": ["mug", "ball"],
           "instances": {0: {"name": "my-mug", "coarse": 0}, 1: {"name": "my-ball", "coarse": "ball"}},
           "splits": {"base": {"images": "base/images"},
                      "personal": {"images": "personal/images", "label_ids": "instance"}},
           "episodes": {"personal": {1: "episodes.json"}}}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _image(root: Path) -> Artifact:
    from mocha.data.images import image_size, load_image

    yaml_path = _tiny_dataset(root)
    img = yaml_path.parent / "base/images/i0.png"

    def load() -> Any:
        image_size(img)
        return load_image(img)

    return Artifact([img], str(img), load, root, {".png": _image_mutator})


def _label(root: Path) -> Artifact:
    from mocha.data.dataset import load_dataset
    from mocha.data.records import read_split

    spec = load_dataset(_tiny_dataset(root))
    label = root / "personal/labels/i0.txt"
    return Artifact([label], str(label), lambda: read_split(spec, "personal"), root, {".txt": _label_mutator})


def _dataset_yaml(root: Path) -> Artifact:
    from mocha.data.dataset import load_dataset

    path = _tiny_dataset(root)
    return Artifact([path], str(path), lambda: load_dataset(path), root, {".yaml": _yaml_mutator})


def _episodes(root: Path) -> Artifact:
    from mocha.data.dataset import load_dataset, load_episodes

    spec = load_dataset(_tiny_dataset(root))
    path = root / "episodes.json"
    return Artifact([path], str(path), lambda: load_episodes(spec, 1, n=5), root, {".json": _json_mutator})


def _gallery(root: Path) -> Artifact:
    import numpy as np

    from mocha.personalize.gallery import Gallery, Support

    path = root / "me.gallery"
    rng = np.random.default_rng(0)
    with Gallery.create(path, "0123456789abcdef", None, 8, min_similarity=0.5) as g:
        for name, coarse in (("my mug", 0), ("my ball", 1)):
            g.add(name, coarse, ["mug", "ball"][coarse],
                  [Support("a.jpg", "0" * 64, [1, 2, 30, 40], "user", rng.standard_normal(8).astype(np.float32))])

    def load() -> Any:
        with Gallery(path, timeout=1.0) as g:
            return g.meta, g.dim, g.bundle_digest, g.get_setting("min_similarity"), g.instances(supports=True)

    return Artifact([path], str(path), load, root, {".gallery": _sqlite_mutator})


def _pca_artifact(path: Path, teacher_dim: int = 16, dim: int = 8) -> Any:
    import torch

    from mocha.teacher.pca import PCAArtifact

    torch.manual_seed(0)
    art = PCAArtifact.fit(torch.randn(40, teacher_dim), dim, source="s", teacher_key="k")
    art.save(path)
    return art


def _pca(root: Path) -> Artifact:
    import torch

    from mocha.teacher.pca import PCAArtifact

    path = root / "pca-8.safetensors"
    _pca_artifact(path)

    def load() -> Any:
        art = PCAArtifact.load(path)
        return art.transform(torch.zeros(2, art.teacher_dim)), art.inverse(torch.zeros(2, art.dim))

    st_mut = {".safetensors": lambda d, b: (_safetensors_tensor_mutator if d.draw(st.booleans())
                                            else _safetensors_header_mutator)(d, b)}
    return Artifact([path], str(path), load, root, st_mut)


def _store(root: Path) -> Artifact:
    import torch

    from mocha.teacher.store import EmbeddingStore, region_key

    path = root / "store"
    store = EmbeddingStore.create_or_open(path, "builtin", "k" * 16, 8, {"text": "a photo of a {label}"})
    keys = [region_key("0" * 64, (0.5, 0.5, 0.1 * i + 0.1, 0.2), "mug", store.teacher_key) for i in range(6)]
    w = store.writer(flush_every=3)
    torch.manual_seed(0)
    w.add(keys, torch.randn(6, 8))
    w.flush()
    store.write_split("base_train", keys[:4], {"data": "data.yaml"})

    def load() -> Any:
        s = EmbeddingStore.open(path)
        split_keys, _ = s.split_keys("base_train")
        return s.get(s.keys()), s.digest(), split_keys, s.get([k for k in split_keys if k in s])

    chunks = sorted((path / "chunks").glob("*.safetensors"))
    files = [path / "store.json", *chunks, path / "splits/base_train.safetensors"]
    st_mut = {".json": _json_mutator,
              ".safetensors": lambda d, b: (_safetensors_tensor_mutator if d.draw(st.booleans())
                                            else _safetensors_header_mutator)(d, b)}
    return Artifact(files, str(path), load, root, st_mut)


def _bundle(root: Path) -> Artifact:
    import torch

    from mocha.models.bundle import load_bundle, save_bundle
    from mocha.models.detector import Student
    from mocha.models.translator import Translator

    torch.manual_seed(0)
    student = Student.create("yolov8n.yaml", names=["mug", "ball"])
    pca = _pca_artifact(root / "pca.safetensors")
    path = save_bundle(root / "bundle", student, Translator(student.region_dim, 8), pca, {"imgsz": 64})
    (root / "pca.safetensors").unlink()
    files = [path / "bundle.json", path / "translator.safetensors", path / "pca", path / "student.safetensors"]
    st_mut = {".json": _json_mutator,
              ".safetensors": lambda d, b: (_safetensors_tensor_mutator if d.draw(st.booleans())
                                            else _safetensors_header_mutator)(d, b)}
    st_mut[""] = st_mut[".safetensors"]  # bundle/pca (no suffix) is a safetensors file too
    return Artifact(files, str(path), lambda: load_bundle(path), root, st_mut)


TARGETS: dict[str, Callable[[Path], Artifact]] = {
    "image": _image, "label file": _label, "dataset yaml": _dataset_yaml, "episode json": _episodes,
    "gallery": _gallery, "pca": _pca, "store": _store, "bundle": _bundle,
}


# ---------------------------------------------------------------------------------------------- running
def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_case(art: Artifact, target: Path, new: bytes, what: str, tally: Tally, limit: float = CASE_SECONDS) -> None:
    """Write `new` into `target`, load the artifact, classify the outcome into `tally`, restore the file."""
    orig = target.read_bytes()
    target.write_bytes(new)
    before = _hashes(art.root)
    t0 = time.perf_counter()
    tally.tried += 1
    label = f"{what} of {target.name} ({len(new)} bytes)"
    try:
        with _time_limit(limit):
            art.load()
        tally.loaded += 1
    except CaseTimeout:
        tally.hangs.append(label)
    except MochaError as exc:
        if art.names in str(exc):
            tally.refused += 1
        else:
            tally.tracebacks.append(f"{label}: message does not name {art.names}: {exc}")
    except Exception:  # noqa: BLE001 - exactly what the fuzzing looks for
        tally.tracebacks.append(f"{label}:\n{traceback.format_exc(limit=-4)}")
    elapsed = time.perf_counter() - t0
    if elapsed > limit and not (tally.hangs and tally.hangs[-1] == label):
        tally.hangs.append(f"{label}: {elapsed:.1f} s")
    after = _hashes(art.root)
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    if changed:
        tally.modified.append(f"{label}: {', '.join(changed)}")
    target.write_bytes(orig)
    for extra in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        extra.unlink(missing_ok=True)


def fuzz_kind(kind: str, examples: int | str, seed: int = 0, workdir: Path | None = None) -> Tally:
    """Run hypothesis cases against one artifact kind (`examples`: a count or a profile name); returns the tally."""
    base = settings.get_profile(f"mocha-fuzz-{examples}" if isinstance(examples, str) else "mocha-fuzz-small")
    n = PROFILES[examples] if isinstance(examples, str) else int(examples)
    tally = Tally(kind)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"mocha-fuzz-{kind.replace(' ', '-')}-", dir=workdir) as d:
        root = Path(d)
        art = TARGETS[kind](root)
        originals = {p: p.read_bytes() for p in art.files}

        @settings(base, max_examples=n)
        @given(data=st.data())
        def one(data: Any) -> None:
            target = data.draw(st.sampled_from(art.files))
            what, new = mutations(data, originals[target], art.structured.get(target.suffix))
            run_case(art, target, new, what, tally)

        hseed(seed)(one)()
        shutil.rmtree(root, ignore_errors=True)
    tally.seconds = time.perf_counter() - t0
    return tally


def fuzz_all(profile: str = "small", seed: int = 0, kinds: list[str] | None = None,
             workdir: Path | None = None) -> list[Tally]:
    """Every kind (or `kinds`) under a profile of `PROFILES`."""
    return [fuzz_kind(k, profile, seed, workdir) for k in (kinds or list(TARGETS))]
