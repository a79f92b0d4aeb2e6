"""`mocha pretrain` (stage 1)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("pretrain")
    def pretrain_cmd(
        data: Path = typer.Option(..., help="dataset YAML (ours or a paper dataset)"),
        model: str = typer.Option(
            "yolov8n.yaml", help="model YAML (from scratch), ultralytics .pt, or mocha .safetensors"
        ),
        epochs: int = typer.Option(30, help="training epochs"),
        imgsz: int = typer.Option(256, help="square input size (multiple of 32)"),
        batch: int = typer.Option(16, help="batch size"),
        workers: int = typer.Option(2, help="dataloader workers"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu; '0,1' = ultralytics DDP on two GPUs"),
        train_split: str = typer.Option("base_train", help="split to train on"),
        val_split: str = typer.Option("base_val", help="split to validate on"),
        seed: int = typer.Option(0, help="random seed"),
        name: str = typer.Option("default", help="run name: runs/pretrain/<name>/"),
        project: Path = typer.Option(Path("runs/pretrain"), help="parent folder of runs"),
    ) -> None:
        """Stage 1: train the YOLO student on the coarse labels of a dataset (ultralytics trainer)."""
        from mocha.student.pretrain import PretrainConfig, pretrain

        out = pretrain(
            PretrainConfig(
                data=data,
                model=model,
                epochs=epochs,
                imgsz=imgsz,
                batch=batch,
                workers=workers,
                device=device,
                train_split=train_split,
                val_split=val_split,
                seed=seed,
                name=name,
                project=project,
            )
        )
        typer.echo(f"student: {out}")
