"""`mocha distill` (stage 2). Under `torchrun --nproc_per_node=N -m mocha.cli distill ...` it runs on N processes."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("distill")
    def distill_cmd(
        data: Path | None = typer.Option(None, help="dataset YAML (required unless --resume)"),
        store: Path | None = typer.Option(None, help="teacher embedding store (from `mocha teacher extract`)"),
        pca: Path | None = typer.Option(None, help="PCA artifact (from `mocha teacher pca`); its dim is d_t"),
        student: Path | None = typer.Option(
            None, help="stage-1 student (.safetensors, bundle folder or ultralytics .pt)"
        ),
        epochs: int = typer.Option(50, help="epochs (SPEC: 50, or 20 from an already-distilled student)"),
        name: str = typer.Option("distill", help="run name: <project>/<name>/"),
        project: Path = typer.Option(Path("runs/distill"), help="parent folder of runs"),
        imgsz: int = typer.Option(256, help="square letterbox size (multiple of 32)"),
        batch: int = typer.Option(16, help="images per process and step"),
        det_every: int = typer.Option(4, help="every N-th epoch trains the whole student with L_det (0 = never)"),
        train_split: str = typer.Option("base_train", help="split to distill on"),
        val_split: str = typer.Option("base_val", help="split whose first --val-images images choose best/"),
        val_images: int = typer.Option(200, help="size of the fixed validation subset"),
        lr_translator: float = typer.Option(1e-3, help="translator learning rate"),
        lr_student: float = typer.Option(1e-4, help="student learning rate (detection epochs)"),
        lambda_det: float = typer.Option(1.0, help="weight of L_det"),
        lambda_dist: float = typer.Option(1.0, help="weight of L_dist"),
        lambda_emb: float = typer.Option(1.0, help="weight of L_emb"),
        temperature: float = typer.Option(1.0, help="L_emb temperature T"),
        warmup_iters: int = typer.Option(1000, help="linear warm-up iterations (capped at a tenth of the run)"),
        seed: int = typer.Option(42, help="random seed"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu"),
        resume: bool = typer.Option(False, "--resume", help="continue <project>/<name>/latest exactly"),
        exist_ok: bool = typer.Option(False, "--exist-ok", help="start over in an existing run folder"),
        extract_missing: bool = typer.Option(
            False, "--extract-missing", help="run the teacher for regions missing from the store (else: error)"
        ),
        skip_nonfinite: bool = typer.Option(
            False, "--skip-nonfinite", help="skip (and count/log) batches with a NaN/inf loss instead of stopping"
        ),
        tensorboard: bool = typer.Option(True, help="write TensorBoard scalars to <run>/tb"),
    ) -> None:
        """Stage 2: distill teacher embeddings into the student + translator (SPEC schedule).

        Writes <project>/<name>/: config.json, latest/ (every epoch, resumable), best/ (lowest validation
        distillation loss), metrics.jsonl and tb/ events. Prints the best bundle's path.
        """
        from mocha.distill.train import DistillConfig, distill

        best = distill(
            DistillConfig(
                data=data,
                store=store,
                pca=pca,
                student=student,
                epochs=epochs,
                name=name,
                project=project,
                imgsz=imgsz,
                batch=batch,
                det_every=det_every,
                train_split=train_split,
                val_split=val_split,
                val_images=val_images,
                lr_translator=lr_translator,
                lr_student=lr_student,
                lambda_det=lambda_det,
                lambda_dist=lambda_dist,
                lambda_emb=lambda_emb,
                temperature=temperature,
                warmup_iters=warmup_iters,
                seed=seed,
                device=device or None,
                resume=resume,
                exist_ok=exist_ok,
                extract_missing=extract_missing,
                skip_nonfinite=skip_nonfinite,
                tensorboard=tensorboard,
            )
        )
        typer.echo(f"bundle: {best}")
