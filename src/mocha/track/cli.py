"""`mocha track` (options: `mocha.track.verb.TrackConfig`; runs `mocha.track.verb.track`)."""

from __future__ import annotations

import typer

from mocha.core.commands import command
from mocha.track.verb import TrackConfig, track


def register(app: typer.Typer) -> None:
    command(app, "track", TrackConfig, track)
