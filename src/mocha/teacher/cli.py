"""`mocha teacher extract|pca|info`: fill the embedding store, fit the PCA, describe a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mocha.core.commands import command
from mocha.teacher.config import ExtractConfig, InfoConfig, PcaConfig


def extract(cfg: ExtractConfig) -> Path:
    """`mocha teacher extract` as a function: every split of `cfg.split` into the store; returns its path."""
    from mocha.teacher.extract import close_dist, extract_split

    opts = cfg.teacher_options()
    for name in cfg.split:
        st = extract_split(cfg.data, name, cfg.out, teacher=cfg.teacher, teacher_options=opts or None,
                           device=cfg.device, flush_every=cfg.flush_every, skip_bad=cfg.skip_bad,
                           progress=cfg.progress)
        rate = f", {st.rate:.1f} regions/s" if st.extracted else ""
        typer.echo(f"{name}: {st.regions} regions — {st.reused} reused, {st.extracted} extracted "
                   f"in {st.seconds:.1f}s{rate}" + (f" (rank-local; {st.ranks} ranks)" if st.ranks > 1 else ""))
    close_dist()
    typer.echo(f"store: {cfg.out}")
    return cfg.out


def fit_pca(cfg: PcaConfig) -> Path:
    """`mocha teacher pca` as a function; returns the artifact's path."""
    from mocha.teacher.pca import fit_store_pca

    art = fit_store_pca(cfg.store, dim=cfg.dim, split=cfg.split, seed=cfg.seed)
    path = cfg.out or cfg.store / f"pca-{cfg.dim}.safetensors"
    art.save(path)
    ev = (art.meta or {}).get("explained_variance_ratio", 0.0)
    typer.echo(f"PCA {art.teacher_dim}→{art.dim} on {art.meta['vectors']} vectors of {cfg.split!r}: "
               f"{100 * ev:.1f}% of the variance kept; digest {art.digest} → {path}")
    return path


def info(cfg: InfoConfig) -> dict[str, Any]:
    """`mocha teacher info`: print and return the store's manifest summary."""
    import json

    from mocha.teacher.store import EmbeddingStore

    s = EmbeddingStore.open(cfg.store)
    typer.echo(f"teacher {s.teacher_name} (key {s.teacher_key}), {s.dim}-d, {len(s)} entries, "
               f"{len(s.chunk_files())} chunk file(s)")
    splits = {}
    for name in s.splits():
        keys, meta = s.split_keys(name)
        splits[name] = len(keys)
        typer.echo(f"  split {name}: {len(keys)} regions of {meta.get('images', '?')} images ({meta.get('data')})")
    settings = s.manifest.get("settings", {})
    typer.echo(json.dumps(settings, indent=2))
    return {"teacher": s.teacher_name, "dim": s.dim, "entries": len(s), "splits": splits, "settings": settings}


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Teacher embeddings: `extract` into a store, fit the `pca`, `info` on a store.",
                      no_args_is_help=True)
    app.add_typer(sub, name="teacher")
    command(sub, "extract", ExtractConfig, extract, words=("teacher", "extract"))
    command(sub, "pca", PcaConfig, fit_pca, words=("teacher", "pca"))
    command(sub, "info", InfoConfig, info, words=("teacher", "info"))
