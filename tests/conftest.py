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


@pytest.fixture
def free_port() -> int:
    """A TCP port free right now on loopback (bound to 0, the OS picks): torchrun tests never collide with another
    run or a leftover rank on a fixed port."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
