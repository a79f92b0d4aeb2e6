"""Options of `mocha teacher extract | pca | info` (light module: the CLI imports it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mocha.core.config import Config, option
from mocha.teacher.registry import list_teachers

DTYPES = ("float32", "float16", "bfloat16")
DECODINGS = ("reference", "greedy", "sample")  # presets of mocha.teacher.llava.DECODINGS


@dataclass(kw_only=True)
class ExtractConfig(Config):
    """Teacher embeddings of every ground-truth region of the splits, into a resumable store.

    Reruns reuse every entry already there; under `torchrun --nproc_per_node=N -m mocha.cli teacher extract`
    each rank extracts its share. The teacher is not even loaded when the store already covers the data.
    """

    data: Path = option(help="dataset YAML", exists=True)
    out: Path = option(help="store folder (created, or resumed when it exists)")
    teacher: str | None = option(None, choices=list_teachers(),
                                 help=" | ".join(list_teachers()) + " (default: the store's, builtin for a new one)")
    split: list[str] = option(["base_train", "base_val"], help="comma-separated splits to extract")
    model: str | None = option(None, help="llava/clip: local folder or hub id in the HF cache")
    clip_model: str | None = option(None, help="llava+clip: the CLIP model (folder or cached hub id)")
    decoding: str | None = option(None, help="llava: " + " | ".join(DECODINGS), choices=DECODINGS)
    max_new_tokens: int | None = option(None, help="llava: generation length cap (SPEC: 300)", ge=1)
    seed: int | None = option(None, help="llava: seed of sampled decoding")
    prompt: str | None = option(None, help="llava: prompt template with %s for the coarse label")
    dtype: str | None = option(None, help=" | ".join(DTYPES) + " (default: float16 on CUDA)", choices=DTYPES)
    text: str | None = option(None, help="builtin: text template with {label}")
    batch: int | None = option(None, help="regions per teacher forward (default: the teacher's)", ge=1)
    flush_every: int = option(256, help="entries per durable chunk write (what a kill can lose)", ge=1)
    device: str | None = option(None, help="default: cuda:<LOCAL_RANK> when present, else cpu")
    skip_bad: bool = option(False, help="skip unreadable images / bad label files")
    progress: bool = option(True, help="progress bar / lines")

    def teacher_options(self) -> dict[str, Any]:
        """The options the teacher's loader takes (unset ones left out)."""
        keys = ("model", "clip_model", "decoding", "max_new_tokens", "seed", "prompt", "dtype", "text")
        opts: dict[str, Any] = {k: getattr(self, k) for k in keys if getattr(self, k) not in (None, "")}
        if self.batch is not None:
            opts["batch_size"] = self.batch
        return opts


@dataclass(kw_only=True)
class PcaConfig(Config):
    """Fit the PCA of teacher embeddings (train split only) → one artifact with mean, components, scale."""

    store: Path = option(help="embedding store folder", exists=True)
    dim: int = option(512, help="d_t: number of components (SPEC default 512)", ge=1)
    split: str = option("base_train", help="fit on this split's entries only (the train split)")
    out: Path | None = option(None, help="artifact path (default: <store>/pca-<dim>.safetensors)")
    seed: int = option(0, help="seed of the randomized solver (large inputs)")


@dataclass(kw_only=True)
class InfoConfig(Config):
    """Teacher, settings, entry count and extracted splits of a store."""

    store: Path = option(help="embedding store folder", exists=True)
