"""`mocha demo`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        size: str = typer.Option("small", help="world size: tiny | small | medium"),
        seed: int = typer.Option(0, help="world seed"),
        imgsz: int = typer.Option(256, help="input size"),
        pretrain_epochs: int = typer.Option(
            60, help="stage-1 epochs (the default world's 60-epoch student is shipped; --fresh retrains it)"
        ),
        teacher: str = typer.Option("builtin", help="teacher for the store and the teacher methods"),
        dim: int = typer.Option(32, help="d_t: PCA components (distillation target dimension)"),
        epochs: int = typer.Option(8, help="stage-2 distillation epochs"),
        det_every: int = typer.Option(
            1, help="every N-th distillation epoch trains the whole student (SPEC reference: 4; 0 = never)"
        ),
        lambda_dist: float = typer.Option(20.0, help="weight of L_dist (SPEC reference: 1)"),
        lr_student: float = typer.Option(5e-3, help="student learning rate in detection epochs (SPEC reference: 1e-4)"),
        lambda_emb: float = typer.Option(1.0, help="weight of the relational loss L_emb"),
        episodes: int = typer.Option(100, help="episodes per shot count"),
        probe_episodes: int = typer.Option(100, help="episodes of the neural-collapse probe"),
        shots: str = typer.Option("1,5", help="comma-separated shot counts"),
        out: Path = typer.Option(Path("runs/demo"), help="run folder"),
        fresh: bool = typer.Option(False, help="rerun every stage (and retrain the stage-1 student)"),
        progress: bool = typer.Option(True, help="progress bars"),
    ) -> None:
        """The whole MOCHA recipe on the embedded default world: world → stage 1 → teacher store → PCA →
        stage 2 → stage 3 (student / mocha / teacher / teacher-gt) → neural-collapse probe.

        Finished stages are reused (content-keyed); writes <out>/report.md, report.json and plots/.
        """
        from mocha.demo.run import DemoConfig, run_demo
        from mocha.errors import ConfigError

        try:
            shot_list = [int(s) for s in shots.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--shots {shots!r}: expected comma-separated integers, e.g. 1,5") from None
        run_demo(
            DemoConfig(size=size, seed=seed, imgsz=imgsz, pretrain_epochs=pretrain_epochs, teacher=teacher, dim=dim,
                       distill_epochs=epochs, det_every=det_every, lambda_emb=lambda_emb,
                       lambda_dist=lambda_dist, lr_student=lr_student, episodes=episodes,
                       probe_episodes=probe_episodes, shots=shot_list, out=out, fresh=fresh, progress=progress)
        )  # fmt: skip
        typer.echo(f"report: {out / 'report.md'}")
