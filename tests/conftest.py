"""Shared fixtures: the shared data folder and deterministic torch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import catlog

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


@pytest.fixture(autouse=True)
def _restore_validation_defaults():
    """Every test leaves the validation defaults as it found them: catlog's, and torch.distributions',
    which Dynamo turns off for good on its first compile (``Distribution.set_default_validate_args(False)``)."""
    distributions, estimators = torch.distributions.Distribution._validate_args, catlog.Estimator._default_validate_args
    yield
    torch.distributions.Distribution.set_default_validate_args(distributions)
    catlog.Estimator.set_default_validate_args(estimators)


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (fastest for small tensors, fair on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
