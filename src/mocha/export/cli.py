"""`mocha export bundle=... format=onnx` (options: ExportConfig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from mocha.core.commands import command
from mocha.core.config import Config, option
from mocha.resources import SHIPPED_BUNDLES

FORMATS = ("onnx",)


@dataclass(kw_only=True)
class ExportConfig(Config):
    """Export a bundle to ONNX: detector.onnx (boxes, coarse scores, feature maps) + embedder.onnx (feature
    maps + boxes → region embeddings, translator inside); int8=true calib=<images> quantizes the detector.
    Instances can still be enrolled afterwards: `mocha detect backend=onnx onnx=<out>` /
    Personalizer.load(out, backend="onnx")."""

    bundle: Path = option(help="bundle folder (or a distill run folder → its best/), or a shipped bundle by name "
                          "(coco)", exists=SHIPPED_BUNDLES)
    format: str = option("onnx", help="export format: " + " | ".join(FORMATS), choices=FORMATS)
    out: Path | None = option(None, help="output folder", default_text="runs/export/<bundle or run name>")
    imgsz: int | None = option(None, help="fixed input size", gt=0, multiple_of=32,
                               default_text="the bundle's imgsz, else 640")
    opset: int = option(17, help="ONNX opset", ge=11)
    int8: bool = option(False, help="quantize the detector graph to int8 (static, QDQ, per-channel; needs calib)")
    calib: Path | None = option(None, help="folder of calibration images for int8 (world images, not test ones)",
                                exists=True)


def default_out(bundle: Path) -> Path:
    """runs/export/<run or bundle name>/ (a distill run's best/ is named after its run)."""
    b = bundle.resolve()
    name = b.parent.name if b.name in ("best", "latest") else b.name
    return Path("runs/export") / (name or "bundle")


def export(cfg: ExportConfig) -> Path:
    """`mocha export` as a function; returns the export folder."""
    from mocha.export.onnx_export import export_onnx

    path = export_onnx(cfg.bundle, cfg.out or default_out(cfg.bundle), imgsz=cfg.imgsz, opset=cfg.opset,
                       int8=cfg.int8, calib=cfg.calib)
    print(f"exported {cfg.bundle} → {path}" + (" (int8 detector)" if cfg.int8 else ""))
    return path


def register(app: typer.Typer) -> None:
    command(app, "export", ExportConfig, export)
