"""Plots of an evaluation run (matplotlib, Agg): metrics vs shots, PCA of instance embeddings, annotated queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mocha.core.metrics import COLUMNS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_vs_shots(report: dict[str, Any], path: Path) -> Path:
    """One panel per metric: mean ± std against the shot count, one line per method."""
    plt = _plt()
    shots = sorted(report["results"], key=int)
    methods: list[str] = []
    for s in shots:
        methods.extend(m for m in report["results"][s] if m not in methods)
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.4))
    for ax, (key, title) in zip(axes, COLUMNS, strict=True):
        for m in methods:
            xs = [int(s) for s in shots if m in report["results"][s]]
            ys = np.array([report["results"][str(s)][m].get(key) for s in xs], dtype=float)
            es = np.array([report["results"][str(s)][m].get(f"{key}_std") for s in xs], dtype=float)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=m)
        ax.set_title(title)
        ax.set_xlabel("shots")
        ax.set_xticks([int(s) for s in shots])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def embedding_pca(ev: Any, path: Path) -> Path | None:
    """2-D PCA of the GT-box embeddings of the personal instances, per method (collapse vs separation)."""
    from sklearn.decomposition import PCA

    panels = [mf for mf in ev.methods if mf.method.label in ("student", "mocha", "teacher")] or \
        [mf for mf in ev.methods if not mf.method.gt_queries] or ev.methods
    inst = torch.cat([im.gt_instance for im in ev.images]).numpy()
    if len(inst) < 3:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    ids = sorted(set(inst.tolist()))
    cmap = plt.get_cmap("tab20", max(len(ids), 1))
    colour = {k: cmap(j % 20) for j, k in enumerate(ids)}
    for ax, mf in zip(axes[0], panels, strict=True):
        x = torch.cat(mf.support).numpy().astype(np.float64)
        xy = PCA(n_components=2).fit_transform(x) if x.shape[1] >= 2 else np.c_[x, np.zeros(len(x))]
        ax.scatter(xy[:, 0], xy[:, 1], c=[colour[k] for k in inst.tolist()], s=14)
        ax.set_title(f"{mf.method.label} ({x.shape[1]}-d)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("PCA of personal-instance embeddings (colour = instance)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def annotated_queries(ev: Any, out: Path, count: int = 4) -> list[Path]:
    """A few query images of the first episode: GT (dashed green) and relabelled boxes (name, score)."""
    from mocha.data.loader import DetectionDataset

    plt = _plt()
    if not ev.examples:
        return []
    shots = min(s for s, _ in ev.examples)
    labels = [lb for s, lb in ev.examples if s == shots]
    label = next((lb for lb in ("mocha", "student") if lb in labels), labels[0])
    ep, preds, truths = ev.examples[(shots, label)]
    ds = DetectionDataset(ev.records, ev.cfg.imgsz)
    paths = []
    for j, (i, p, g) in enumerate(list(zip(ep.query, preds, truths, strict=True))[:count]):
        img = ds[i]["image"].permute(1, 2, 0).numpy()
        fig, ax = plt.subplots(figsize=(4, 4.3))
        fig.subplots_adjust(0.01, 0.01, 0.99, 0.93)
        ax.imshow(img)
        ax.set_xlim(0, img.shape[1])
        ax.set_ylim(img.shape[0], 0)
        for b, k in zip(g.boxes, g.label, strict=True):
            ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="lime", ls="--", lw=1.5))
            ax.text(b[0], b[3], ev.spec.instance_name(int(k)), color="lime", fontsize=7, va="top", clip_on=True)
        top = np.argsort(-p.score)[:10]
        for t in top:
            if p.label[t] < 0:
                continue
            b = p.boxes[t]
            ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="red", lw=1.2))
            ax.text(b[0], b[1], f"{ev.spec.instance_name(int(p.label[t]))} {p.score[t]:.2f}", color="white",
                    fontsize=7, va="bottom", clip_on=True, bbox={"facecolor": "red", "alpha": 0.6, "pad": 1, "lw": 0})
        ax.set_axis_off()
        ax.set_title(f"{label}, {shots}-shot, episode {ep.index}", fontsize=8)
        path = out / f"query_{j}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_plots(ev: Any, report: dict[str, Any], out: Path) -> list[Path]:
    """All plots of a run into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [metric_vs_shots(report, out / "metrics_vs_shots.png")]
    pca = embedding_pca(ev, out / "embeddings_pca.png")
    if pca is not None:
        paths.append(pca)
    return paths + annotated_queries(ev, out)
