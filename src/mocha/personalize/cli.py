"""`mocha enroll`, `mocha gallery list|remove|tune|openset`, `mocha detect`: generated from their config dataclasses
(mocha.personalize.verbs, mocha.personalize.detect)."""

from __future__ import annotations

import typer

from mocha.core.commands import command
from mocha.personalize.detect import DetectConfig, detect
from mocha.personalize.verbs import (
    EnrollConfig,
    GalleryListConfig,
    GalleryRemoveConfig,
    GalleryTuneConfig,
    OpenSetConfig,
    enroll,
    gallery_list,
    gallery_remove,
    gallery_tune,
    open_set,
)


def register(app: typer.Typer) -> None:
    command(app, "enroll", EnrollConfig, enroll)
    gallery_app = typer.Typer(help="Inspect or edit a gallery: list | remove | tune | openset.", no_args_is_help=True)
    command(gallery_app, "list", GalleryListConfig, gallery_list, words=("gallery", "list"))
    command(gallery_app, "remove", GalleryRemoveConfig, gallery_remove, words=("gallery", "remove"))
    command(gallery_app, "tune", GalleryTuneConfig, gallery_tune, words=("gallery", "tune"))
    command(gallery_app, "openset", OpenSetConfig, open_set, words=("gallery", "openset"))
    app.add_typer(gallery_app, name="gallery")
    command(app, "detect", DetectConfig, detect)
