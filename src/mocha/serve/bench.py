"""`mocha bench serve`: `POST /detect` through `mocha serve` on loopback vs `Personalizer.detect` called directly.

One `mocha serve` process (uvicorn, one worker) on 127.0.0.1 only, and one clean process calling
`p.detect(path)` directly, with the same thread count. The same JPEG goes to both: the direct call reads it
from disk, the client uploads its bytes.
1 client: direct and server calls alternate one at a time (load from other users hits both alike), median of
each → `serve_overhead` = server p50 / direct p50 − 1 (target ≤ 0.15). Then N clients (8; bounded count) send
detect requests for a fixed time while one more client enrols a new instance about every second: throughput,
p50/p95 latency, errors (target 0) and lost enrolments (instances listed at the end vs enrolments answered 201;
target 0). Model: $MOCHA_BENCH_BUNDLE, else the fresh random-weight bundle of `mocha bench latency`
(mocha.personalize.bench) with the same cluttered-scene threshold.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mocha.bench.core import BenchResult
from mocha.bench.worker import TimedWorker, thread_env

MAX_CLIENTS = 32  # loopback load stays bounded whatever the caller asks


@dataclass
class Setup:
    """What both sides run on: the gallery (records the bundle), detector settings, the query JPEG."""

    gallery: Path
    query: Path
    conf: float
    max_det: int
    imgsz: int
    bundle_note: str


def prepare(work: Path, bundle: Path | None) -> Setup:
    """Bundle (given, or fresh as `mocha bench latency` makes it), a gallery of 5 instances, the query JPEG."""
    from PIL import Image

    from mocha.personalize import bench as latency
    from mocha.personalize.personalizer import Personalizer

    img = latency.bench_image()
    conf, max_det, note = 0.1, 300, str(bundle)
    if bundle is None:
        import torch

        from mocha.models.bundle import save_bundle
        from mocha.models.detector import Student
        from mocha.models.translator import Translator

        torch.manual_seed(0)
        student = Student.create("yolov8n.yaml", names=latency.NAMES)
        latency.calibrate_bn(student, img)
        bundle = save_bundle(work / "bundle", student, Translator(448, 512).eval(), None,
                             {"imgsz": latency.IMGSZ, "note": "serve benchmark"})
        conf, max_det, note = latency.clutter_conf(bundle, img), 100, "fresh random-weight YOLOv8n + translator 448→512"
    query = work / "query.jpg"
    Image.fromarray(img).save(query, quality=90)
    gallery = work / "bench.gallery"
    with Personalizer.load(bundle, gallery) as p:
        h, w = img.shape[:2]
        for k in range(5):  # five personal instances of two coarse classes
            x = 40 + 90 * k
            p.enroll(f"instance{k}", img, boxes=[[x, 60, min(w, x + 120), min(h, 300)]], coarse=k % 2)
        imgsz = int(p.engine.imgsz)
    return Setup(gallery, query, conf, max_det, imgsz, note)


def direct_worker(setup: Setup, threads: int) -> TimedWorker:
    """`Personalizer.detect` in its own clean process (as the server runs in its own), timed one call at a time."""
    args = [str(setup.gallery), str(setup.query), str(threads), repr(setup.conf), str(setup.max_det)]
    return TimedWorker("mocha.serve.bench", args, threads, label="direct worker")


def _direct_worker(gallery: str, query: str, threads: str, conf: str, max_det: str) -> None:
    """Calls come from one worker thread, as the server's do from its thread pool: with 2 torch threads on a
    loaded 2-core machine the same detect took 4-8x longer from the main thread than from a worker thread
    (OpenMP teams behave differently there), which would credit the server with a speed-up it does not make."""
    from concurrent.futures import ThreadPoolExecutor

    from mocha.personalize.personalizer import Personalizer

    with Personalizer.load(gallery=gallery, threads=int(threads), device="cpu", conf=float(conf),
                           max_det=int(max_det)) as p, ThreadPoolExecutor(1) as pool:
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "time":
                break
            t0 = time.perf_counter()
            n = pool.submit(lambda: len(p.detect(query))).result()
            print(f"{(time.perf_counter() - t0) * 1e3:.4f} {n}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(setup: Setup, threads: int, timeout: float = 180.0) -> Iterator[str]:
    """`mocha serve` in a subprocess on a free loopback port; yields its base URL, stops it after."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "mocha.cli", "serve", f"gallery={setup.gallery}", "host=127.0.0.1", f"port={port}",
           f"conf={setup.conf}", f"max_det={setup.max_det}", f"threads={threads}", "device=cpu"]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=thread_env(threads))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"mocha serve exited ({proc.returncode}):\n{log.read().decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mocha serve did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ms(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def measure(setup: Setup, threads: int = 2, single: int = 40, warmup: int = 3, clients: int = 8,
            seconds: float = 30.0) -> dict[str, Any]:
    """The numbers of the benchmark (see the module docstring) as a dict of rows and summary."""
    import httpx

    clients = max(1, min(int(clients), MAX_CLIENTS))
    data = setup.query.read_bytes()
    files = {"image": (setup.query.name, data, "image/jpeg")}
    direct_ms: list[float] = []
    served_ms: list[float] = []
    direct = direct_worker(setup, threads)
    try:
        with server(setup, threads) as url, httpx.Client(base_url=url, timeout=120) as c:
            boxes = None
            for i in range(warmup + single):  # alternate: one direct call, one request, never both at once
                ms, n_direct = direct.time()
                t0 = time.perf_counter()
                resp = c.post("/detect", files=files)
                t1 = time.perf_counter()
                resp.raise_for_status()
                answer = resp.json()
                boxes = len(answer["detections"])
                if boxes != n_direct:
                    raise RuntimeError(f"server found {boxes} boxes, the direct call {n_direct}")
                if i >= warmup:
                    direct_ms.append(ms)
                    served_ms.append((t1 - t0) * 1e3)
            direct.close()  # its cores are the server's during the load phase
            before = len(c.get("/instances").json()["instances"])
            h, w = answer["height"], answer["width"]
            box = [round(w * 0.1), round(h * 0.15), round(w * 0.5), round(h * 0.75)]  # inside any image
            load = _load(url, files, data, setup.query.name, box, clients, seconds)
            after = len(c.get("/instances").json()["instances"])
    finally:
        direct.close()
    lost = before + load["enrolled"] - after
    d50, s50 = statistics.median(direct_ms), statistics.median(served_ms)
    rows = [
        {"mode": "Personalizer.detect (direct)", "clients": 1, "requests": len(direct_ms), "p50_ms": round(d50, 2),
         "p95_ms": _ms(direct_ms, 95), "errors": 0},
        {"mode": "POST /detect", "clients": 1, "requests": len(served_ms), "p50_ms": round(s50, 2),
         "p95_ms": _ms(served_ms, 95), "errors": 0},
        {"mode": "POST /detect (+ enrolling)", "clients": clients, "requests": len(load["ms"]),
         "p50_ms": _ms(load["ms"], 50), "p95_ms": _ms(load["ms"], 95), "errors": load["errors"],
         "throughput_rps": round(len(load["ms"]) / load["elapsed"], 2)},
    ]
    summary = {
        "serve_overhead": round(s50 / d50 - 1, 4),
        "direct_p50_ms": round(d50, 2),
        "server_p50_ms": round(s50, 2),
        "clients": clients,
        "seconds": round(load["elapsed"], 1),
        "throughput_rps": rows[2]["throughput_rps"],
        "concurrent_p50_ms": rows[2]["p50_ms"],
        "concurrent_p95_ms": rows[2]["p95_ms"],
        "errors": load["errors"],
        "enrolments": load["enrolled"],
        "lost_enrolments": lost,
        "boxes_per_image": boxes,
        "threads": threads,
        "imgsz": setup.imgsz,
        "bundle": setup.bundle_note,
    }
    return {"rows": rows, "summary": summary, "error_samples": load["samples"]}


def _load(url: str, files: dict, data: bytes, name: str, box: list[int], clients: int,
          seconds: float) -> dict[str, Any]:
    """`clients` threads posting detect requests for `seconds` while one more thread enrols every ~second."""
    import httpx

    stop = time.monotonic() + seconds
    ms: list[float] = []
    errors, enrolled, samples = [0], [0], []
    lock = threading.Lock()

    def fail(what: str) -> None:
        with lock:
            errors[0] += 1
            if len(samples) < 5:
                samples.append(what)

    def detector() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = c.post("/detect", files=files)
                except httpx.HTTPError as exc:
                    fail(f"detect: {exc!r}")
                    continue
                if r.status_code != 200:
                    fail(f"detect: {r.status_code} {r.text[:200]}")
                    continue
                with lock:
                    ms.append((time.perf_counter() - t0) * 1e3)

    def enroller() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            k = 0
            while time.monotonic() < stop:
                try:
                    r = c.post("/instances", data={"name": f"bench {k}", "boxes": json.dumps([box]),
                                                   "coarse": "0"}, files=[("images", (name, data, "image/jpeg"))])
                except httpx.HTTPError as exc:
                    fail(f"enrol: {exc!r}")
                else:
                    if r.status_code == 201:
                        enrolled[0] += 1
                    else:
                        fail(f"enrol: {r.status_code} {r.text[:200]}")
                k += 1
                time.sleep(1.0)

    t0 = time.monotonic()
    threads = [threading.Thread(target=detector) for _ in range(clients)] + [threading.Thread(target=enroller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"ms": ms, "errors": errors[0], "enrolled": enrolled[0], "samples": samples,
            "elapsed": time.monotonic() - t0}


def run(out_dir: Path, quick: bool = False) -> BenchResult:
    """`mocha bench serve` (see the module docstring); --quick: fewer single-client images and 10 s of load."""
    threads = max(1, min(2, os.cpu_count() or 1))
    given = os.environ.get("MOCHA_BENCH_BUNDLE")
    single, seconds = (20, 10.0) if quick else (40, 30.0)
    with tempfile.TemporaryDirectory(prefix="mocha-serve-bench-") as tmp:
        setup = prepare(Path(tmp), Path(given) if given else None)
        res = measure(setup, threads=threads, single=single, clients=8, seconds=seconds)
    notes = (f"CPU, {threads} torch threads in the server and in the direct run; loopback only; 1 client: direct "
             f"and server calls alternate ({single} each after warm-up, same 600×400 JPEG, letterboxed to "
             f"{setup.imgsz}); then 8 clients for {seconds:.0f} s while a ninth enrols an instance every ~1 s.")
    if res["error_samples"]:
        notes += " First errors: " + " | ".join(res["error_samples"])
    return BenchResult("serve", res["rows"], res["summary"], notes=notes,
                       targets={"serve_overhead": "<= 0.15", "errors": "<= 0", "lost_enrolments": "<= 0"})


if __name__ == "__main__":
    _direct_worker(*sys.argv[1:])
