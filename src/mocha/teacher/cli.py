"""`mocha teacher extract|pca|info`: fill the embedding store, fit the PCA, describe a store."""

from __future__ import annotations

from pathlib import Path

import typer

_TEACHERS = "builtin (offline default) | clip | llava | llava+clip"


def _teacher_options(**kw: object) -> dict[str, object]:
    return {k: v for k, v in kw.items() if v is not None and v != ""}


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Teacher embeddings: `extract` into a store, fit the `pca`, `info` on a store.",
                      no_args_is_help=True)
    app.add_typer(sub, name="teacher")

    @sub.command("extract")
    def extract_cmd(
        data: Path = typer.Option(..., help="dataset YAML"),
        out: Path = typer.Option(..., help="store folder (created, or resumed when it exists)"),
        teacher: str = typer.Option(None, help=_TEACHERS + " (default: the store's teacher, builtin for a new store)"),
        split: str = typer.Option("base_train,base_val", help="comma-separated splits to extract"),
        model: str = typer.Option(None, help="llava/clip: local folder or hub id in the HF cache"),
        clip_model: str = typer.Option(None, help="llava+clip: the CLIP model (folder or cached hub id)"),
        decoding: str = typer.Option(None, help="llava: reference | greedy | sample"),
        max_new_tokens: int = typer.Option(None, help="llava: generation length cap (SPEC: 300)"),
        seed: int = typer.Option(None, help="llava: seed of sampled decoding"),
        prompt: str = typer.Option(None, help="llava: prompt template with %s for the coarse label"),
        dtype: str = typer.Option(None, help="float32 | float16 | bfloat16 (default: float16 on CUDA)"),
        text: str = typer.Option(None, help="builtin: text template with {label}"),
        batch: int = typer.Option(None, help="regions per teacher forward (default: the teacher's)"),
        flush_every: int = typer.Option(256, help="entries per durable chunk write (what a kill can lose)"),
        device: str = typer.Option(None, help="default: cuda:<LOCAL_RANK> when present, else cpu"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable images / bad label files"),
        progress: bool = typer.Option(True, help="progress bar"),
    ) -> None:
        """Teacher embeddings of every ground-truth region of the splits, into a resumable store.

        Reruns reuse every entry already there; under `torchrun --nproc_per_node=N -m mocha.cli teacher extract`
        each rank extracts its share. The teacher is not even loaded when the store already covers the data.
        """
        from mocha.teacher.extract import close_dist, extract_split

        opts = _teacher_options(model=model, clip_model=clip_model, decoding=decoding, max_new_tokens=max_new_tokens,
                                seed=seed, prompt=prompt, dtype=dtype, text=text)
        if batch is not None:
            opts["batch_size"] = batch
        for name in [s.strip() for s in split.split(",") if s.strip()]:
            st = extract_split(data, name, out, teacher=teacher, teacher_options=opts or None,
                               device=device, flush_every=flush_every, skip_bad=skip_bad, progress=progress)
            rate = f", {st.rate:.1f} regions/s" if st.extracted else ""
            typer.echo(f"{name}: {st.regions} regions — {st.reused} reused, {st.extracted} extracted "
                       f"in {st.seconds:.1f}s{rate}" + (f" (rank-local; {st.ranks} ranks)" if st.ranks > 1 else ""))
        close_dist()
        typer.echo(f"store: {out}")

    @sub.command("pca")
    def pca_cmd(
        store: Path = typer.Option(..., help="embedding store folder"),
        dim: int = typer.Option(512, help="d_t: number of components (SPEC default 512)"),
        split: str = typer.Option("base_train", help="fit on this split's entries only (the train split)"),
        out: Path = typer.Option(None, help="artifact path (default: <store>/pca-<dim>.safetensors)"),
        seed: int = typer.Option(0, help="seed of the randomized solver (large inputs)"),
    ) -> None:
        """Fit the PCA of teacher embeddings (train split only) → one artifact with mean, components, scale."""
        from mocha.teacher.pca import fit_store_pca

        art = fit_store_pca(store, dim=dim, split=split, seed=seed)
        path = out or store / f"pca-{dim}.safetensors"
        art.save(path)
        ev = (art.meta or {}).get("explained_variance_ratio", 0.0)
        typer.echo(f"PCA {art.teacher_dim}→{art.dim} on {art.meta['vectors']} vectors of {split!r}: "
                   f"{100 * ev:.1f}% of the variance kept; digest {art.digest} → {path}")

    @sub.command("info")
    def info_cmd(store: Path = typer.Option(..., help="embedding store folder")) -> None:
        """Teacher, settings, entry count and extracted splits of a store."""
        import json

        from mocha.teacher.store import EmbeddingStore

        s = EmbeddingStore.open(store)
        typer.echo(f"teacher {s.teacher_name} (key {s.teacher_key}), {s.dim}-d, {len(s)} entries, "
                   f"{len(s.chunk_files())} chunk file(s)")
        for name in s.splits():
            keys, meta = s.split_keys(name)
            typer.echo(f"  split {name}: {len(keys)} regions of {meta.get('images', '?')} images ({meta.get('data')})")
        typer.echo(json.dumps(s.manifest.get("settings", {}), indent=2))
