"""`mocha export --bundle ... --format onnx`."""

from __future__ import annotations

from pathlib import Path

import typer

from mocha.errors import ConfigError

FORMATS = ("onnx",)


def default_out(bundle: Path) -> Path:
    """runs/export/<run or bundle name>/ (a distill run's best/ is named after its run)."""
    b = bundle.resolve()
    name = b.parent.name if b.name in ("best", "latest") else b.name
    return Path("runs/export") / (name or "bundle")


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        bundle: Path = typer.Option(..., help="bundle folder (or a distill run folder → its best/)"),
        format: str = typer.Option("onnx", help="export format: onnx"),
        out: Path | None = typer.Option(None, help="output folder (default runs/export/<bundle name>/)"),
        imgsz: int | None = typer.Option(None, help="fixed input size (default: the bundle's imgsz, else 640)"),
        opset: int = typer.Option(17, help="ONNX opset"),
    ) -> None:
        """Export a bundle to ONNX: detector.onnx (boxes, coarse scores, feature maps) + embedder.onnx
        (feature maps + boxes → region embeddings, translator inside). Instances can still be enrolled
        afterwards: `mocha detect --backend onnx --onnx <out>` / Personalizer.load(out, backend="onnx")."""
        from mocha.export.onnx_export import export_onnx

        if format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
        path = export_onnx(bundle, out or default_out(bundle), imgsz=imgsz, opset=opset)
        typer.echo(f"exported {bundle} → {path}")
