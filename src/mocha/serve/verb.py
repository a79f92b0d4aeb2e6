"""`mocha serve`: the web page and REST API of mocha.serve.app under uvicorn, on this machine only by default.

`serve(ServeConfig(gallery=..., bundle=...))` is `mocha serve gallery=... bundle=...`; it blocks until Ctrl-C.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.errors import ConfigError
from mocha.personalize.engine import BACKENDS
from mocha.personalize.matching import coarse_penalty_option
from mocha.resources import SHIPPED_BUNDLES


@dataclass(kw_only=True)
class ServeConfig(Config):
    """Serve a web page and a REST API: enrol by drawing a box, detect by dropping a photo.

    Example: mocha serve bundle=runs/demo/bundle gallery=me.gallery  (then open http://127.0.0.1:8000;
    the API reference is at /docs)
    """

    gallery: Path = option(help="gallery file (SQLite); created when missing, tied to the bundle")
    bundle: Path | None = option(None, help="bundle folder, or a shipped bundle by name (coco)", exists=SHIPPED_BUNDLES,
                                 default_text="the one the gallery records; coco for a new gallery")
    host: str = option("127.0.0.1", help="address to listen on; 127.0.0.1 = this machine only, 0.0.0.0 = every "
                                         "network this machine is on")
    port: int = option(8000, help="TCP port (0 = any free one)", ge=0, le=65535)
    backend: str = option("torch", help="torch | onnx", choices=BACKENDS)
    onnx: Path | None = option(None, help="ONNX export folder for backend=onnx (`mocha export`)", exists=True)
    conf: float = option(0.25, help="default detector confidence threshold", ge=0, le=1)
    iou: float = option(0.6, help="NMS IoU", ge=0, le=1)
    max_det: int = option(300, help="max boxes per image", ge=1)
    min_similarity: float | None = option(None, help="default open-set threshold", ge=-1, le=1,
                                          default_text="the gallery's, else 0.0")
    coarse_penalty: float | None = coarse_penalty_option()
    enroll_conf: float = option(0.05, help="detector confidence for choosing/classifying enrolment boxes", ge=0, le=1)
    max_upload_mb: float = option(20.0, help="largest request body in MiB (larger: HTTP 413)", gt=0)
    device: str = option("", help="'' = CUDA if present else cpu")
    threads: int | None = option(None, help="torch / onnxruntime threads", ge=1, default_text="the runtime's default")

    def validate(self) -> None:
        super().validate()
        if self.backend == "onnx" and self.onnx is None:
            raise ConfigError("backend=onnx needs onnx=<export folder> (`mocha export bundle=... format=onnx`)")
        if not self.gallery.exists() and self.bundle is None and self.onnx is None:
            raise ConfigError(f"gallery={self.gallery}: gallery does not exist; give bundle=... to create it")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def load_personalizer(cfg: ServeConfig) -> Any:
    """The Personalizer `mocha serve` runs on (opens or creates the gallery)."""
    from mocha.personalize.personalizer import Personalizer

    model = cfg.onnx if cfg.backend == "onnx" else cfg.bundle
    return Personalizer.load(model, cfg.gallery, backend=cfg.backend, device=cfg.device or None, threads=cfg.threads,
                             conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det, min_similarity=cfg.min_similarity,
                             coarse_penalty=cfg.coarse_penalty, enroll_conf=cfg.enroll_conf)


def serve(cfg: ServeConfig) -> None:
    """`mocha serve` as a function: load, print the address, serve until interrupted, close the gallery."""
    import uvicorn

    from mocha.serve.app import create_app

    with load_personalizer(cfg) as p:
        app = create_app(p, max_upload_bytes=cfg.max_upload_bytes)
        print(f"gallery {cfg.gallery}: {len(p.gallery)} instance(s); backend {cfg.backend}; page at /, API at /docs")
        # uvicorn prints the address it bound ("Uvicorn running on http://..."), the real port also for port=0
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False)
