"""Test-wide setup: offline environment, small thread counts, shared tiny fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mocha  # noqa: E402,F401  (sets YOLO_CONFIG_DIR and the font)
