"""Test-wide setup: offline environment, small thread counts, shared tiny fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import mocha  # noqa: E402,F401  (sets YOLO_CONFIG_DIR and the font)


@pytest.fixture
def one_thread():
    """torch on one thread for the test (restored after): on a shared CPU two threads wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
