"""`mocha evaluate`: the episodic few-shot benchmark (paper protocol, strict mAP, accuracy, time, memory)."""

from __future__ import annotations

from pathlib import Path

import typer

from mocha.errors import ConfigError


def parse_shots(text: str) -> list[int]:
    """"1,5" → [1, 5] (ConfigError naming --shots otherwise)."""
    try:
        shots = [int(s) for s in str(text).replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--shots: expected comma-separated integers like 1,5, got {text!r}") from None
    if not shots or min(shots) < 1:
        raise ConfigError(f"--shots: expected positive integers like 1,5, got {text!r}")
    return shots


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        data: Path = typer.Option(..., help="dataset YAML (ours or a paper layout's)"),
        method: str = typer.Option(
            "student", help="comma list of student | mocha | teacher | teacher-gt, or kind:PATH/NAME for more "
            "(e.g. mocha:runs/distill/a/best,teacher:builtin)"
        ),
        shots: str = typer.Option("1", help="shot counts, e.g. 1,5"),
        episodes: int = typer.Option(100, help="episodes per shot count"),
        detector: Path | None = typer.Option(
            None, help="box source for all methods: student weights or a bundle folder (default: the first "
            "method's own detector); also the `student` method's weights"
        ),
        bundle: Path | None = typer.Option(None, help="distilled bundle for the `mocha` method"),
        teacher: str = typer.Option("builtin", help="teacher name for `teacher` / `teacher-gt`"),
        learner: str = typer.Option("conditional", help="conditional | flat | simpleshot"),
        fallback: str = typer.Option("drop", help="conditional learner, box of a class without prototypes: drop|all"),
        split: str | None = typer.Option(None, help="split to draw episodes from (default: the dataset's)"),
        seed: int = typer.Option(0, help="episode seed"),
        imgsz: int = typer.Option(640, help="letterbox size (paper: 672)"),
        conf: float = typer.Option(0.1, help="detector confidence threshold for query boxes"),
        iou: float = typer.Option(0.6, help="NMS IoU"),
        max_det: int = typer.Option(300, help="max query boxes per image"),
        time_images: int = typer.Option(20, help="images timed per method (after one warm-up image)"),
        name: str = typer.Option("exp", help="run name: <project>/<name>/"),
        project: Path = typer.Option(Path("runs/evaluate"), help="parent folder of runs"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu"),
        plots: bool = typer.Option(True, help="write plots/"),
        cache: bool = typer.Option(True, help="keep per-image features under <project>/.cache (resume, reruns)"),
        threads: int = typer.Option(0, help="torch CPU threads (0 = torch default; 1 is fastest on a busy CPU)"),
    ) -> None:
        """Episodic few-shot evaluation of one or more methods on the same detector boxes.

        Writes <project>/<name>/report.md (one table), report.json, config.json and plots/; prints the table.
        """
        from mocha.evaluate.episodic import EvalConfig, evaluate
        from mocha.evaluate.methods import parse_method
        from mocha.evaluate.report import markdown

        if threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {threads}")
        if threads:
            import torch

            torch.set_num_threads(threads)
        defaults = {"detector": None, "bundle": bundle, "teacher": teacher}
        specs = [parse_method(t, defaults) for t in method.split(",") if t.strip()]
        report = evaluate(EvalConfig(
            data=data, methods=specs, shots=parse_shots(shots), episodes=episodes, seed=seed, split=split,
            detector=detector, imgsz=imgsz, conf=conf, iou=iou, max_det=max_det, learner=learner,
            fallback=fallback, time_images=time_images, out=project, name=name, device=device or None, plots=plots,
            cache=cache,
        ))
        typer.echo(markdown(report))
        typer.echo(f"run folder: {report['run_dir']}")
