"""Offline-by-construction process environment (no hub, no auto-install, no font download)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_OFFLINE = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_VERBOSE": "false",
}


def set_offline_env() -> None:
    """Set the offline variables (unless the user set them) and give ultralytics a local config dir.

    The config dir gets a copy of a TTF as Arial.ttf so ultralytics' plotting never tries to download it.
    """
    for key, value in _OFFLINE.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        cfg = Path(tempfile.gettempdir()) / "mocha-yolo-config"
        cfg.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    _ensure_font(Path(os.environ["YOLO_CONFIG_DIR"]))


def _ensure_font(cfg: Path) -> None:
    target = cfg / "Arial.ttf"
    if target.exists():
        return
    try:
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if src.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
    except Exception:  # font is cosmetic; never fail a run for it
        pass
