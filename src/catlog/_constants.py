"""Small constant tensors of the estimators' hot paths, built once per size and device."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def constant(build: Callable[[int, torch.device], torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """``build(size, device)``, built once per ``build``, size and device and shared (not to be
    written into): a constant of the estimators' hot paths (:func:`identity`, :func:`count_up`),
    whose allocation costs as much as an op. Under ``torch.compile``, built in the graph."""
    if torch.compiler.is_compiling():
        return build(size, device)
    return _cached(build, size, device)


@functools.lru_cache(maxsize=64)
def _cached(build: Callable[[int, torch.device], torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(False):
        return build(size, device)


def identity(size: int, device: torch.device) -> torch.Tensor:
    """``BoolTensor[size, size]``, true on the diagonal."""
    return torch.eye(size, dtype=torch.bool, device=device)


def count_up(size: int, device: torch.device) -> torch.Tensor:
    """``LongTensor[size]``: ``0, 1, ..., size - 1``."""
    return torch.arange(size, device=device)
