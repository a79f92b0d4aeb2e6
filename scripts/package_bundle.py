"""Copy a distilled bundle into the package as a shipped, loadable-by-name bundle (`bundle=coco`).

The open-set settings a gallery was tuned to (`mocha gallery tune`) become the bundle's defaults
(bundle.json config `personalize`), and `<name>.json` next to the bundle records the sha256 of every file, the
source bundle's digest and the commands that produced it. Run by scripts/build_coco_bundle.sh, never by CI:

    python scripts/package_bundle.py runs/coco/distill/best runs/coco/tuned.gallery coco \
        --commands runs/coco/commands.txt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from mocha.io import file_sha256, write_json
    from mocha.models.bundle import load_bundle, save_bundle
    from mocha.personalize.gallery import Gallery
    from mocha.resources import SHIPPED_BUNDLES, asset_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, help="distilled bundle (a distill run's best/)")
    ap.add_argument("gallery", type=Path, help="a gallery `mocha gallery tune` tuned with this bundle")
    ap.add_argument("name", choices=SHIPPED_BUNDLES, help="the shipped name")
    ap.add_argument("--commands", type=Path, required=True, help="text file: the commands that built the bundle")
    ap.add_argument("--min-similarity", type=float, default=None,
                    help="the open-set threshold to ship instead of the tuned one (e.g. the equal-error point of "
                         "`mocha gallery openset`)")
    ap.add_argument("--replace", nargs="*", default=[], metavar="OLD=NEW",
                    help="path prefixes to rewrite in the recorded config and reports (no machine paths shipped)")
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="JSON reports to record (evaluation, open set)")
    ap.add_argument("--student-half", action="store_true",
                    help="store a copied student in float16 (NanoDet-g's own weights are float16 already)")
    a = ap.parse_args()

    src = load_bundle(a.bundle)
    with Gallery(a.gallery) as g:
        g.check_bundle(src.digest, str(a.bundle))
        tuned = {k: g.get_setting(k) for k in ("min_similarity", "coarse_penalty", "calibration")}
        tuned_on = g.get_setting("tuned_on")
    if any(v is None for v in tuned.values()):
        raise SystemExit(f"{a.gallery}: not tuned (run `mocha gallery tune` first); has {tuned}")
    if a.min_similarity is not None:
        tuned["min_similarity"] = a.min_similarity
    pairs = [r.split("=", 1) for r in a.replace]

    def clean(v: object) -> object:
        if isinstance(v, str):
            for old, new in pairs:
                v = v.replace(old, new)
            return v
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    config = clean({**src.config, "personalize": tuned, "personalize_tuned_on": tuned_on})
    out = asset_path("bundles", a.name)
    import torch

    save_bundle(out, src.student, src.translator, src.pca, config,
                student_dtype=torch.float16 if a.student_half else None)
    packaged = load_bundle(out)  # loads back by name, hash-checked student reference included
    files = {str(p.relative_to(out)): file_sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    write_json(out.parent / f"{a.name}.json", {
        "name": a.name,
        "digest": packaged.digest,
        "source_bundle_digest": src.digest,
        "student": json.loads((out / "bundle.json").read_text()).get("student_ref") or "student.safetensors",
        "personalize": tuned,
        "files": files,
        "commands": a.commands.read_text().strip().splitlines(),
        "reports": clean({p.name: json.loads(p.read_text()) for p in a.extra}),
    })
    print(f"{out}: digest {packaged.digest}, {len(files)} files, defaults {tuned}")


if __name__ == "__main__":
    main()
