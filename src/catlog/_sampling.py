"""Gumbel noise and categorical sampling with an optional generator."""

from __future__ import annotations

import torch


def gumbel_noise(shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise ``G = -log(-log U)``, ``U ~ Uniform(0, 1)``, of ``shape``.

    Uses the dtype and device of ``like``; ``U`` is clamped away from 0 so ``G`` is finite.
    """
    uniform = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    tiny = torch.finfo(like.dtype).tiny
    return -torch.log(-torch.log(uniform.clamp_min(tiny)))


def sample_categorical(
    log_probs: torch.Tensor, sample_shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``X ~ Cat(softmax(log_probs))`` independently per variable by the Gumbel-max trick.

    Args:
        log_probs: ``[*B, D, K]`` normalised log-probabilities (``-inf`` = impossible, never drawn).
        sample_shape: the leading sample dimensions ``S``.
        generator: optional torch generator for reproducibility.

    Returns:
        ``LongTensor[*S, *B, D]`` with ``X = argmax_k (log_probs_k + G_k)``.
    """
    noise = gumbel_noise((*sample_shape, *log_probs.shape), log_probs, generator)
    return (log_probs.detach() + noise).argmax(-1)
