"""Binary problems (``K = 2``): figure 2's (paper section 6.2) and the squared Hamming distance.

Figure 2: ``D = 200`` binary variables, ``f(x) = 1/D sum_i (x_i - 0.499)^2``, logits
``theta: [D, 2]`` that start from ``N(0, 1)`` (a fresh draw per seed, the authors'
``tf.random.normal([200, 2])``). ``E[f]`` is analytic (:func:`expected_value`), and so
is its gradient. The optimum, ``X = 1`` surely, is ``(1 - 0.499)^2 = 0.251001``.

:func:`hamming`: figure 1's non-separable ``f`` at ``K = 2``, ``(Hamming distance to b)^2 / D``,
where DisARM applies (``catlog compare``'s ``binary``).
"""

from __future__ import annotations

import torch

from catlog.experiments.problems import figure1
from catlog.experiments.problems.problem import Problem, logits_problem

OFFSET = 0.499
OPTIMUM = (1 - OFFSET) ** 2
NUM_CATEGORIES = 2


def objective(x: torch.Tensor) -> torch.Tensor:
    """``f(x) = 1/D sum_i (x_i - 0.499)^2`` for ``x: [M, *B, D]`` (indices or relaxed values); returns ``[M, *B]``."""
    return (x - OFFSET).square().mean(-1)


def expected_value(logits: torch.Tensor) -> torch.Tensor:
    """Exact ``E[f(X)]`` for ``logits: [*B, D, 2]``: ``1/D sum_i [p_i (1 - c)^2 + (1 - p_i) c^2]``, ``c = 0.499``."""
    p = logits.softmax(-1)[..., 1]
    return (p * (1 - OFFSET) ** 2 + (1 - p) * OFFSET**2).mean(-1)


def start_logits(num_variables: int, seed: int) -> torch.Tensor:
    """Figure 2's starting logits ``theta ~ N(0, 1)``, ``[D, 2]`` in float64, drawn from ``seed`` alone."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_variables, NUM_CATEGORIES, generator=generator, dtype=torch.float64)


def figure2(num_variables: int, seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """Figure 2's problem at its starting logits (:func:`start_logits`); the exact gradient is analytic."""
    logits = start_logits(num_variables, seed).requires_grad_()
    (exact,) = torch.autograd.grad(expected_value(logits), logits)
    title = f"fig. 2, 1/D sum_i (x_i - 0.499)^2, D = {num_variables}"
    return logits_problem(
        "fig2", title, logits.detach().to(device, dtype), objective, relaxable=True, exact=exact.flatten().to(device)
    )


def hamming(num_variables: int, seed: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """``f(x) = (Hamming distance of x to b)^2 / D`` on ``K = 2`` (figure 1's non-separable ``f``)."""
    title = f"binary, (Hamming distance)^2 / D, D = {num_variables}"
    return figure1.problem(num_variables, 2, "nonseparable", seed, device, dtype, "binary", title)
