"""`mocha enroll`, `mocha gallery list|remove`, `mocha detect` (images, folders, globs, videos)."""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Any

import typer

from mocha.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def parse_boxes(text: str | None, n: int) -> list[list[float] | None] | None:
    """--box "x1,y1,x2,y2[;x1,y1,x2,y2...]": one box per source ('-' = the detector's best box)."""
    if not text:
        return None
    parts = [p.strip() for p in str(text).split(";")]
    if len(parts) != n:
        raise ConfigError(f"--box: {len(parts)} box(es) for {n} source(s); give one per source separated by ';' "
                          "('-' lets the detector choose)")
    out: list[list[float] | None] = []
    for p in parts:
        if p in ("", "-", "auto"):
            out.append(None)
            continue
        try:
            vals = [float(v) for v in p.split(",")]
        except ValueError:
            raise ConfigError(f"--box: expected x1,y1,x2,y2 numbers, got {p!r}") from None
        if len(vals) != 4:
            raise ConfigError(f"--box: expected 4 numbers x1,y1,x2,y2, got {p!r}")
        out.append(vals)
    return out


def expand_source(source: str) -> tuple[str, list[Path]]:
    """("video" | "images", paths) for an image, a folder of images, a glob pattern or a video file."""
    from mocha.data.images import IMAGE_SUFFIXES

    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder has no images or videos")
        return "images", files
    if any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in _glob.glob(source, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"--source {source!r}: the pattern matches no files")
        return "images", files
    if not path.exists():
        raise DataError(f"{path}: source not found")
    return ("video" if path.suffix.lower() in VIDEO_SUFFIXES else "images"), [path]


def run_dir(project: Path, name: str, exist_ok: bool) -> Path:
    """<project>/<name>/, or name2, name3, ... when it exists (unless exist_ok)."""
    out = project / name
    if exist_ok or not out.exists():
        return out
    i = 2
    while (project / f"{name}{i}").exists():
        i += 1
    return project / f"{name}{i}"


def _unique(stem: str, used: set[str]) -> str:
    s, i = stem, 2
    while s in used:
        s, i = f"{stem}_{i}", i + 1
    used.add(s)
    return s


def detect_video(p: Any, path: Path, out: Path, stem: str, save: bool, progress: bool = True) -> dict[str, Any]:
    """Per frame personalized detection; writes <stem>.mp4 (annotated) and returns the JSON object."""
    import cv2
    from tqdm import tqdm

    from mocha.data.images import letterbox

    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise DataError(f"{path}: cannot decode video (no readable frame)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, tmp = None, out / f".{stem}.tmp.mp4"
    frames: list[dict[str, Any]] = []
    try:
        with tqdm(total=total, desc=path.name, unit="frame", disable=not progress) as bar:
            while ok:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                lb_img, lb = letterbox(rgb, p.engine.imgsz)
                dets, embs = p.engine.detect(lb_img, conf=p.conf, iou=p.iou, max_det=p.max_det)
                res = p.results(rgb, lb, dets, embs, path=str(path))
                frames.append({"frame": len(frames), "detections": res.to_json()["detections"]})
                if save:
                    if writer is None:
                        h, w = rgb.shape[:2]
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    writer.write(cv2.cvtColor(res.plot(), cv2.COLOR_RGB2BGR))
                bar.update(1)
                ok, frame = cap.read()
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, out / f"{stem}.mp4")
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if tmp.exists():
            tmp.unlink()
    h, w = rgb.shape[:2]
    return {"source": str(path), "width": w, "height": h, "fps": fps, "frames": frames}


def detect_sources(p: Any, source: str, out: Path, save: bool, progress: bool = True) -> list[Path]:
    """Run `p` over every input of `source`; one JSON per input (+ annotated image/video when save)."""
    from tqdm import tqdm

    from mocha.io import write_json

    kind, files = expand_source(source)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for f in tqdm(files, desc="detect", unit="img", disable=not progress or len(files) < 2):
        stem = _unique(f.stem, used)
        if kind == "video" or f.suffix.lower() in VIDEO_SUFFIXES:
            obj = detect_video(p, f, out, stem, save, progress)
        else:
            res = p.detect(f)
            obj = res.to_json()
            if save:
                ext = ".jpg" if f.suffix.lower() in (".jpg", ".jpeg") else ".png"
                written.append(res.save(out / f"{stem}{ext}"))
        write_json(out / f"{stem}.json", obj)
        written.append(out / f"{stem}.json")
    return written


def _instance_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("name", "coarse", "shots", "created", "updated"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["coarse"], str(r["shots"]), r["created"], r["updated"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command("enroll")
    def enroll_cmd(
        gallery: Path = typer.Option(..., help="gallery file (SQLite); created when missing (needs --bundle)"),
        name: str = typer.Option(..., help="instance name, e.g. 'my mug'"),
        source: str = typer.Option(..., help="comma-separated image paths (several shots of the instance)"),
        box: str | None = typer.Option(
            None, help="x1,y1,x2,y2 in original pixels, one per source separated by ';' ('-' = detector's best box); "
            "default: the detector's best box"),
        coarse: str | None = typer.Option(None, help="coarse class name or id (default: from the detector)"),
        bundle: Path | None = typer.Option(None, help="bundle folder (needed to create a gallery)"),
        append: bool = typer.Option(False, help="add shots to an already enrolled instance"),
        conf: float = typer.Option(0.05, help="detector confidence for choosing/classifying boxes"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu"),
    ) -> None:
        """Enroll a personal instance from a few images; nothing is retrained.

        Example: mocha enroll --gallery me.gallery --bundle runs/distill/a/best --name "my mug"
        --source a.jpg,b.jpg --box "10,20,200,220;-"
        """
        from mocha.personalize.personalizer import Personalizer

        sources = [s.strip() for s in source.split(",") if s.strip()]
        if not sources:
            raise ConfigError("--source: no image paths given")
        boxes = parse_boxes(box, len(sources))
        if not gallery.exists() and bundle is None:
            raise ConfigError(f"{gallery}: gallery does not exist; give --bundle to create it")
        with Personalizer.load(bundle, gallery, device=device or None, enroll_conf=conf) as p:
            report = p.enroll(name, sources, boxes=boxes, coarse=coarse, append=append)
            for line in report.lines():
                typer.echo(line)
            typer.echo(f"{gallery}: {len(p.gallery)} instance(s)")

    gallery_app = typer.Typer(help="Inspect or edit a gallery: list | remove | tune.", no_args_is_help=True)

    @gallery_app.command("list")
    def gallery_list(gallery: Path = typer.Option(..., help="gallery file")) -> None:
        """List enrolled instances and the bundle the gallery is tied to."""
        from mocha.personalize.gallery import Gallery

        with Gallery(gallery) as g:
            rows = [r.summary() for r in g.instances()]
            _instance_table(rows, f"{gallery} — bundle {g.bundle_digest} ({g.bundle_path or '?'})")

    @gallery_app.command("remove")
    def gallery_remove(
        gallery: Path = typer.Option(..., help="gallery file"),
        name: str = typer.Option(..., help="instance to remove"),
    ) -> None:
        """Remove an enrolled instance (error if unknown); nothing is retrained."""
        from mocha.personalize.gallery import Gallery

        with Gallery(gallery) as g:
            g.remove(name)
            typer.echo(f"removed {name!r}; {len(g)} instance(s) left")

    @gallery_app.command("tune")
    def gallery_tune(
        gallery: Path = typer.Option(..., help="gallery file (its bundle is used)"),
        data: Path = typer.Option(..., help="dataset YAML with episodes, e.g. mochaworld small"),
        shots: int = typer.Option(1, help="support images per instance"),
        episodes: int = typer.Option(20, help="episodes to tune on"),
        seed: int = typer.Option(0, help="episode seed"),
        conf: float = typer.Option(0.1, help="detector confidence for query boxes (SPEC protocol)"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu"),
    ) -> None:
        """Choose min_similarity (max strict mAP) and fit the score calibration on a dataset's episodes;
        store both in the gallery (detect then uses them)."""
        from mocha.personalize.gallery import Gallery
        from mocha.personalize.personalizer import load_engine, tune_on_dataset

        with Gallery(gallery) as g:
            if not g.bundle_path:
                raise ConfigError(f"{gallery}: gallery records no bundle path")
            engine = load_engine(g.bundle_path, device=device or None)
            g.check_bundle(engine.digest, g.bundle_path)
            out = tune_on_dataset(engine, data, shots=shots, episodes=episodes, seed=seed, conf=conf)
            g.set_setting("min_similarity", out["min_similarity"])
            g.set_setting("calibration", out["calibration"])
            g.set_setting("tuned_on", {k: out[k] for k in ("data", "split", "shots", "episodes", "seed", "conf")})
        for row in out["table"]:
            typer.echo(f"min_similarity {row['min_similarity']:+.2f}  strict mAP {row['strict_map']:.4f}")
        typer.echo(f"chosen min_similarity {out['min_similarity']:+.2f} (strict mAP {out['strict_map']:.4f}), "
                   f"calibration {out['calibration']} → stored in {gallery}")

    app.add_typer(gallery_app, name="gallery")

    @app.command("detect")
    def detect_cmd(
        gallery: Path = typer.Option(..., help="gallery file (records the bundle it was made with)"),
        source: str = typer.Option(..., help="image, folder, glob pattern ('imgs/*.jpg') or video"),
        save: bool = typer.Option(True, help="write annotated images / video beside the JSON"),
        name: str = typer.Option("exp", help="run name: <project>/<name>/"),
        project: Path = typer.Option(Path("runs/detect"), help="parent folder of runs"),
        exist_ok: bool = typer.Option(False, help="reuse <project>/<name>/ instead of name2, name3, ..."),
        conf: float = typer.Option(0.25, help="detector confidence threshold"),
        iou: float = typer.Option(0.6, help="NMS IoU"),
        max_det: int = typer.Option(300, help="max boxes per image"),
        min_similarity: float | None = typer.Option(
            None, help="below this cosine similarity a box is 'unknown <coarse>' (default: the gallery's or built-in)"),
        backend: str = typer.Option("torch", help="torch | onnx"),
        onnx: Path | None = typer.Option(None, help="ONNX export folder for --backend onnx (`mocha export`)"),
        bundle: Path | None = typer.Option(None, help="bundle folder (default: the one recorded in the gallery)"),
        device: str = typer.Option("", help="'' = CUDA if present else cpu"),
    ) -> None:
        """Detect and name enrolled instances; writes <project>/<name>/ with a JSON per input."""
        from mocha.personalize.personalizer import Personalizer

        if not gallery.exists():
            raise ConfigError(f"gallery not found: {gallery} (create one with `mocha enroll --bundle ...`)")
        model = onnx if backend == "onnx" else bundle
        if backend == "onnx" and onnx is None:
            raise ConfigError("--backend onnx needs --onnx <export folder> (`mocha export --bundle ... --format onnx`)")
        out = run_dir(project, name, exist_ok)
        with Personalizer.load(model, gallery, backend=backend, device=device or None, conf=conf, iou=iou,
                               max_det=max_det, min_similarity=min_similarity) as p:
            written = detect_sources(p, source, out, save)
        typer.echo(f"{len([w for w in written if w.suffix == '.json'])} result(s) → {out}")
