"""Gumbel noise and categorical sampling with an optional generator."""

from __future__ import annotations

import math

import torch

COMPARE_MAX_CATEGORIES = 8
"""Up to this ``K``, :func:`sample_by_inversion` compares ``U`` with every ``F_k``; above, it searches."""

OPAQUE_MIN_DRAWS = 2048
"""From this many uniforms on, compiled code draws them with torch's generator (:func:`uniform`).

Measured on one CPU thread (docs/performance.md, "Round seven: compiled random numbers"): the opaque call
costs about 8 us more than inductor's inline numbers for 64 draws, breaks even near 2,000,
and takes 0.38 to 0.5 of their time from 16,000 on (inductor about 9 ns a number, torch 3.5)."""


@torch.library.custom_op(
    "catlog::uniform",
    mutates_args=(),
    schema="(SymInt[] shape, ScalarType dtype, Device device) -> Tensor",
    tags=(torch.Tag.nondeterministic_seeded,),
)
def _opaque_uniform(shape: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.rand(shape)`` as one operator that ``torch.compile`` calls without tracing into it.

    Tagged nondeterministic-seeded, as torch's own random operators are: no compiler pass
    may merge two calls or recompute one in the backward pass (which would draw anew).
    """
    return torch.rand(shape, dtype=dtype, device=device)


@_opaque_uniform.register_fake
def _(shape: list[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def uniform(shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``U ~ Uniform[0, 1)`` of ``shape``, in the dtype and on the device of ``like``.

    Eager, ``torch.rand``. Inside ``torch.compile`` on the CPU (no ``generator``), at least
    :data:`OPAQUE_MIN_DRAWS` numbers come from the same ``torch.rand`` as one opaque operator:
    inductor would otherwise generate each by its own per-element Philox code, which made
    compiled Gumbel-Softmax 1.2 to 2.4 times slower than eager at figure 1.
    """
    compiling = torch.compiler.is_compiling() and generator is None and like.device.type == "cpu"
    if compiling and math.prod(shape) >= OPAQUE_MIN_DRAWS:
        opaque: torch.Tensor = _opaque_uniform(list(shape), like.dtype, like.device)
        return opaque
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


def log_exponential_noise(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """``log E = log(-log U)``, ``U ~ Uniform(0, 1)``, of ``shape``: minus standard Gumbel noise.

    Uses the dtype and device of ``like``; ``U`` is clamped away from 0 so ``log E`` is finite.
    """
    return uniform(shape, like, generator).clamp_min_(torch.finfo(like.dtype).tiny).log_().neg_().log_()


def gumbel_noise(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Standard Gumbel noise ``G = -log(-log U)``, ``U ~ Uniform(0, 1)``, of ``shape``.

    Uses the dtype and device of ``like``; ``U`` is clamped away from 0 so ``G`` is finite.
    """
    return log_exponential_noise(shape, like, generator).neg_()


def logistic_noise(
    shape: torch.Size | tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Standard logistic noise ``L = logit(U)``, ``U ~ Uniform(0, 1)``, of ``shape``: the law of
    ``G_1 - G_0`` for independent standard Gumbel ``G_0, G_1``.

    Uses the dtype and device of ``like``; ``U`` is clamped away from 0 so ``L`` is finite.
    """
    return uniform(shape, like, generator).clamp_min_(torch.finfo(like.dtype).tiny).logit_()


def sample_categorical(
    log_probs: torch.Tensor, sample_shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``X ~ Cat(softmax(log_probs))`` independently per variable by the Gumbel-max trick.

    Args:
        log_probs: ``[*B, D, K]`` normalised log-probabilities (``-inf`` = impossible, never drawn),
            without autograd (detached by the caller).
        sample_shape: the leading sample dimensions ``S``.
        generator: optional torch generator for reproducibility.

    Returns:
        ``LongTensor[*S, *B, D]`` with ``X = argmax_k (log_probs_k + G_k)``.
    """
    log_exponential = log_exponential_noise((*sample_shape, *log_probs.shape), log_probs, generator)
    return (log_probs - log_exponential).argmax(-1)  # log_probs + G to the bit, one negation fewer


def sample_by_race(
    probs: torch.Tensor, sample_shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``X ~ Cat(probs)`` independently per variable by an exponential race.

    ``X = argmin_k E_k / p_k`` with ``E_k = -log U_k ~ Exp(1)`` independent: ``E_k / p_k ~
    Exp(p_k)``, and the first of independent exponential clocks to ring is ``k`` with
    probability ``p_k / sum_j p_j``; computed as ``argmax_k log(U_k) / p_k``. The Gumbel-max
    trick in other coordinates (``-log(E_k / p_k) = log p_k + G_k``): the law of
    :func:`sample_categorical`, other draws for a generator, in fewer ops (no logarithm of
    the probabilities, one of the noise), for steps whose time is the ops' count. ``U`` is
    clamped away from 0, so ``log U`` is finite and negative: a category of probability 0
    gets ``-inf`` and is never drawn (``-inf / 0`` or ``0 / 0`` would not be).

    Args:
        probs: ``[*B, D, K]`` probabilities (``0`` = impossible); need not sum to 1.
        sample_shape: the leading sample dimensions ``S``.
        generator: optional torch generator for reproducibility.

    Returns:
        ``LongTensor[*S, *B, D]``.
    """
    log_uniform = (
        uniform((*sample_shape, *probs.shape), probs, generator).clamp_min_(torch.finfo(probs.dtype).tiny).log_()
    )
    return log_uniform.div_(probs.detach()).argmax(-1)


def sample_by_inversion(
    probs: torch.Tensor, sample_shape: tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Draw ``X ~ Cat(probs)`` independently per variable by inverting the distribution function.

    ``X = #{k : F_k <= U}`` with ``F = cumsum(probs)`` and ``U ~ Uniform[0, F_{K-1})``:
    one uniform per sample and variable (:func:`sample_categorical` uses ``K``), so it
    is much cheaper for large ``K``; the same distribution, other draws for a given
    generator. Up to :data:`COMPARE_MAX_CATEGORIES` categories the count compares ``U``
    with every ``F_k`` at once; above, a binary search (``searchsorted``) finds it (the
    two give the same ``X`` for the same ``U``, but draw ``U`` in another order). For
    ``K = 2`` the count is one comparison per sample, ``X = 1[U < p_1]`` with
    ``U ~ Uniform[0, 1)``: the probabilities must then sum to 1 up to rounding, as a
    softmax's do. A category of probability 0 is never drawn (``F`` is flat there, and
    ``U`` stays strictly below the total ``F_{K-1}``, which is therefore never counted;
    for ``K = 2``, ``U < 0`` never holds and ``U < 1`` always does).

    Args:
        probs: ``[*B, D, K]`` probabilities (``0`` = impossible); need not sum exactly to 1
            for ``K > 2``; for ``K = 2`` they must, up to rounding (as a softmax's do).
        sample_shape: the leading sample dimensions ``S``.
        generator: optional torch generator for reproducibility.

    Returns:
        ``LongTensor[*S, *B, D]``.
    """
    if probs.shape[-1] == 2:
        return (uniform((*sample_shape, *probs.shape[:-1]), probs, generator) < probs.detach()[..., 1]).long()
    cdf = probs.detach().cumsum(-1)
    compare = probs.shape[-1] <= COMPARE_MAX_CATEGORIES
    shape = (*sample_shape, *probs.shape[:-1]) if compare else (*probs.shape[:-1], math.prod(sample_shape))
    draws = uniform(shape, probs, generator)
    # u < 1 gives u * total < total in round-to-nearest, so no F_k equal to the total is counted
    if compare:
        threshold = draws * cdf[..., -1]
        return (cdf[..., :-1] <= threshold.unsqueeze(-1)).sum(-1)
    samples = torch.searchsorted(cdf, draws * cdf[..., -1:], right=True)
    return samples.movedim(-1, 0).reshape(*sample_shape, *probs.shape[:-1])
