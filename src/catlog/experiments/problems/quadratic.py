"""A dense quadratic form in one-hot ``x``: where IndeCateR's Taylor control variate is exact.

``f(x) = x^T W x / 2 + u^T x`` on one-hot ``x: [M, *B, D, K]`` (flattened to ``D K``),
``W`` symmetric with ``N(0, 2)`` entries off the diagonal blocks and zero on them (every
pair of variables interacts; a block ``W_dd`` would act on one variable alone), ``u`` and
the logits ``N(0, 1)``. ``f`` is a polynomial, so it takes relaxed one-hot values; its
exact gradient is by enumeration (``K^D`` configurations). With ``A_de = W_de`` the
Taylor correction leaves the exact gradient: zero variance up to rounding.
"""

from __future__ import annotations

import torch

import catlog
from catlog.experiments.problems.problem import Problem, logits_problem


def problem(num_variables: int, num_categories: int, seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """The quadratic problem on ``D x K`` logits drawn from ``seed`` (``f`` takes one-hot samples)."""
    generator = torch.Generator().manual_seed(seed)
    size = num_variables * num_categories
    flat = torch.randn(size, size, generator=generator, dtype=torch.float64)
    shape = (num_variables, num_categories, num_variables, num_categories)
    weights = catlog.Bilinear((flat + flat.T).view(shape)).weights.reshape(size, size)  # diagonal blocks dropped
    linear, logits = torch.randn(2, num_variables, num_categories, generator=generator, dtype=torch.float64)

    def objective(x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(-2)
        value: torch.Tensor = (y @ weights.to(y) * y).sum(-1) / 2 + (x * linear.to(x)).sum((-2, -1))
        return value

    exact = catlog.exact_gradient(objective, logits, one_hot=True).flatten()
    title = f"quadratic, x^T W x / 2 + u^T x (one-hot x), D = {num_variables}, K = {num_categories}"
    return logits_problem(
        "quadratic", title, logits.to(device, dtype), objective, relaxable=True, exact=exact.to(device), one_hot=True
    )
