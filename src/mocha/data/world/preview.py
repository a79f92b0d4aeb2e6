"""Contact sheets: a grid of a split's images with their boxes and names, one PNG per split."""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from mocha.errors import DataError
from mocha.io import atomic_path


def preview_world(world: str | Path, out: str | Path | None = None, n: int = 24, cols: int = 6) -> list[Path]:
    """Write `<out>/world_<split>.png` for each split of the world folder (or YAML); return the paths."""
    world = Path(world)
    yml = world if world.suffix in (".yaml", ".yml") else world / "mochaworld.yaml"
    if not yml.is_file():
        raise DataError(f"{yml}: no mochaworld YAML here")
    doc = yaml.safe_load(yml.read_text())
    root = yml.parent / doc.get("root", ".")
    out = Path(out) if out else yml.parent / "preview"
    out.mkdir(parents=True, exist_ok=True)
    names, insts = doc["names"], {int(k): v["name"] for k, v in doc["instances"].items()}
    written = []
    for split, sp in doc["splits"].items():
        imgs = sorted((root / sp["images"]).glob("*.jpg"))
        imgs = imgs[:: max(1, len(imgs) // n)][:n]
        if not imgs:
            continue
        tiles = []
        for p in imgs:
            im = Image.open(p).convert("RGB")
            d = ImageDraw.Draw(im)
            lab = p.parent.parent / "labels" / (p.stem + ".txt")
            for line in lab.read_text().split("\n") if lab.exists() else []:
                if not line.strip():
                    continue
                c, cx, cy, w, h = line.split()
                W, H = im.size
                x0, y0 = (float(cx) - float(w) / 2) * W, (float(cy) - float(h) / 2) * H
                d.rectangle((x0, y0, x0 + float(w) * W, y0 + float(h) * H), outline=(255, 255, 0), width=2)
                text = names[int(c)] if sp["label_ids"] == "coarse" else insts[int(c)]
                d.text((x0 + 2, y0 + 1), text, fill=(255, 255, 0))
            tiles.append(im)
        t = tiles[0].size[0]
        rows = -(-len(tiles) // cols)
        sheet = Image.new("RGB", (cols * t, rows * t), (30, 30, 30))
        for i, im in enumerate(tiles):
            sheet.paste(im.resize((t, t)), ((i % cols) * t, (i // cols) * t))
        dest = out / f"world_{split}.png"
        with atomic_path(dest) as tmp:
            sheet.save(tmp, format="PNG")
        written.append(dest)
    return written
