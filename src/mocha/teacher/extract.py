"""The offline extraction job: teacher embeddings of every ground-truth region of a split, into the store.

Pipeline: a reader thread decodes each image once, crops all its missing regions and queues them; the main
thread runs the teacher on batches of `batch_size` regions and hands the vectors to the store writer, so
decoding and cropping overlap with the teacher's forward. Entries already in the store are skipped (a rerun
over a complete store only hashes the images). Under `torchrun`, rank r takes every world-th image that
has missing regions; rank 0 merges the chunks and writes the split's key list when all ranks are done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as tdist

from mocha.core.device import Dist, choose_device
from mocha.core.progress import progress as progress_bar
from mocha.data.dataset import load_dataset
from mocha.data.images import load_image, norm_cxcywh_to_xyxy
from mocha.data.records import read_split
from mocha.data.schema import DatasetSpec
from mocha.errors import ConfigError, DataError
from mocha.teacher.base import Teacher, teacher_key
from mocha.teacher.crops import crop_regions
from mocha.teacher.registry import create_teacher
from mocha.teacher.store import EmbeddingStore, record_keys

log = logging.getLogger(__name__)


@dataclass
class ExtractStats:
    split: str
    regions: int = 0  # regions of the split
    reused: int = 0  # already in the store before this run
    extracted: int = 0  # computed by this process
    seconds: float = 0.0
    teacher_loaded: bool = False
    ranks: int = 1

    @property
    def rate(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


_DIST: list[Dist] = []  # the group this module joined, kept across splits (re-creating it races between ranks)


def _dist(device: str | None) -> tuple[int, int]:
    """(rank, world): joins the torchrun process group when WORLD_SIZE > 1 (`mocha.core.device.Dist`).

    The group is kept for later calls (several splits in one job). `close_dist()` ends it (the CLI calls it
    after the last split); a group another stage created first is reused and left to that stage."""
    if not _DIST or not tdist.is_initialized():
        _DIST[:] = [Dist.setup(device)]
    return _DIST[0].rank, _DIST[0].world


def close_dist() -> None:
    """End the process group `extract_split` joined (no-op in a single process)."""
    if _DIST:
        _DIST[0].barrier()
        _DIST.pop().close()


def _barrier(world: int) -> None:
    if world > 1:
        tdist.barrier()


def _work_items(records: list[Any], keys: list[list[bytes]],
                present: set[bytes] | EmbeddingStore) -> list[tuple[Any, list[int], list[bytes]]]:
    """(record, box indices, keys) of every image with regions missing from the store (each key once)."""
    items, seen = [], set()
    for rec, ks in zip(records, keys, strict=False):
        idx = []
        for j, k in enumerate(ks):
            if k in present or k in seen:
                continue
            seen.add(k)
            idx.append(j)
        if idx:
            items.append((rec, idx, [ks[j] for j in idx]))
    return items


def _reader(items: list[tuple[Any, list[int], list[bytes]]], names: list[str], out: queue.Queue,
            stop: threading.Event) -> None:
    """Decode each image once and queue (keys, crops, labels); None marks the end, an exception is forwarded."""
    try:
        for rec, idx, ks in items:
            if stop.is_set():
                return
            img = load_image(rec.image)
            h, w = img.shape[:2]
            boxes = norm_cxcywh_to_xyxy(np.asarray(rec.boxes)[idx], w, h)
            crops = crop_regions(img, boxes, size=224, strict=True, where=str(rec.image))
            out.put((ks, crops, [names[int(rec.coarse[j])] for j in idx]))
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the main thread, which re-raises it
        out.put(exc)


def _batches(items: list[tuple[Any, list[int], list[bytes]]], names: list[str], size: int,
             prefetch: int = 32) -> Iterator[tuple[list[bytes], list[np.ndarray], list[str]]]:
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    th = threading.Thread(target=_reader, args=(items, names, q, stop), daemon=True)
    th.start()
    ks_b: list[bytes] = []
    cr_b: list[np.ndarray] = []
    lb_b: list[str] = []
    try:
        while True:
            got = q.get()
            if got is None:
                break
            if isinstance(got, BaseException):
                raise got
            ks, crops, labels = got
            ks_b += ks
            cr_b += crops
            lb_b += labels
            while len(ks_b) >= size:
                yield ks_b[:size], cr_b[:size], lb_b[:size]
                ks_b, cr_b, lb_b = ks_b[size:], cr_b[size:], lb_b[size:]
        if ks_b:
            yield ks_b, cr_b, lb_b
    finally:
        stop.set()
        while th.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(timeout=0.05)


def extract_split(
    spec: DatasetSpec | str | Path,
    split: str,
    store_path: str | Path,
    teacher: str | Teacher | None = "builtin",
    teacher_options: dict[str, Any] | None = None,
    records: list[Any] | None = None,
    batch_size: int | None = None,
    flush_every: int = 256,
    device: str | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    compact: bool = True,
) -> ExtractStats:
    """Fill the store at `store_path` with the teacher's embeddings of every GT region of `split`.

    The teacher is loaded only when some regions are missing (or when `teacher_options` are given, to check
    that they match the store's settings). A store of another teacher/settings is refused.
    """
    t0 = time.perf_counter()
    if not isinstance(spec, DatasetSpec):
        spec = load_dataset(spec)
    if records is None:
        records = read_split(spec, split, skip_bad=skip_bad)
    rank, world = _dist(device)
    store_path = Path(store_path)
    stats = ExtractStats(split, ranks=world)
    model: Teacher | None = teacher if isinstance(teacher, Teacher) else None
    _barrier(world)  # ranks decide on the same store state; every barrier below is reached by all ranks
    exists = (store_path / "store.json").is_file()
    if not exists or model is not None or teacher_options:
        model = model or _load(teacher, teacher_options, device)
        stats.teacher_loaded = True
        if rank == 0:
            EmbeddingStore.create_or_open(store_path, model.name, teacher_key(model), model.dim,
                                          model.settings())
    _barrier(world)
    store = EmbeddingStore.open(store_path)
    if model is not None:
        store.check_teacher(model.name, teacher_key(model), model.settings())
    elif teacher is not None and str(teacher).lower() != store.teacher_name:
        raise ConfigError(f"--teacher {teacher}: the store {store_path} holds embeddings of teacher "
                          f"{store.teacher_name!r}; refusing to mix — use another store folder")
    keys = record_keys(records, spec.names, store.teacher_key)
    flat = [k for ks in keys for k in ks]
    stats.regions = len(flat)
    todo = _work_items(records, keys, store)
    missing = sum(len(it[2]) for it in todo)
    stats.reused = stats.regions - missing
    mine = todo[rank::world]
    if missing:
        if model is None:
            model = _load(teacher if teacher is not None else store.teacher_name, teacher_options, device)
            stats.teacher_loaded = True
            store.check_teacher(model.name, teacher_key(model), model.settings())
        _run(model, store, mine, spec.names, rank, batch_size or model.batch_size, flush_every, progress, stats)
    _barrier(world)
    if rank == 0:
        store.refresh()
        if compact:
            store.compact()
        still = sum(1 for k in set(flat) if k not in store)
        if still:
            raise ConfigError(f"--store {store_path}: {still} regions of split {split!r} still missing after "
                              f"extraction (a rank failed?); rerun to complete them")
        store.write_split(split, flat, {"data": str(spec.path), "split": split, "images": len(records),
                                        "regions": len(flat), "teacher_key": store.teacher_key})
    _barrier(world)
    stats.seconds = time.perf_counter() - t0
    return stats


_loaded: dict[str, Teacher] = {}  # one load per process for several splits (LLaVA takes minutes)


def _load(teacher: str | Teacher | None, options: dict[str, Any] | None, device: str | None) -> Teacher:
    if isinstance(teacher, Teacher):
        return teacher
    opts = dict(options or {})
    opts.setdefault("device", str(choose_device(device)))
    name = str(teacher or "builtin")
    ck = repr((name.lower(), sorted(opts.items())))
    if ck not in _loaded:
        _loaded.clear()
        _loaded[ck] = create_teacher(name, **opts)
    return _loaded[ck]


def _run(model: Teacher, store: EmbeddingStore, items: list[tuple[Any, list[int], list[bytes]]], names: list[str],
         rank: int, batch_size: int, flush_every: int, progress: bool, stats: ExtractStats) -> None:
    writer = store.writer(rank=rank, flush_every=flush_every)
    total = sum(len(it[2]) for it in items)
    bar = progress_bar(total=total, desc=f"extract {stats.split}" + (f" [rank {rank}]" if stats.ranks > 1 else ""),
                       unit="region", enable=progress)
    bar.set_postfix(reused=stats.reused)
    try:
        for ks, crops, labels in _batches(items, names, max(1, int(batch_size))):
            vecs = model.embed(crops, labels)
            if vecs.shape != (len(ks), store.dim):
                raise ConfigError(f"teacher {model.name} returned {tuple(vecs.shape)} for {len(ks)} regions "
                                  f"(store is {store.dim}-d)")
            writer.add(ks, vecs)
            stats.extracted += len(ks)
            bar.update(len(ks))
        writer.flush()
    except (DataError, KeyboardInterrupt):
        writer.flush()  # keep the finished regions; the rerun resumes from there
        raise
    finally:
        bar.close()
