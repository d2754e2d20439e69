"""Shared fixtures: the shared data folder and deterministic torch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (it holds the real MNIST, Fashion-MNIST, Omniglot)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    """Every test starts from the same global seed."""
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (fastest for small tensors, fair on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
