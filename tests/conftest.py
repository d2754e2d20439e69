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
