"""Small random problems with exact answers by enumeration, shared by the estimator tests.

A problem is built for ``R`` independent runs at once: every parameter gets a leading
run dimension (``R`` identical copies), the logits have shape ``[R, *B, D, K]`` and ``f``
broadcasts over it. One estimator call then gives ``R`` independent estimates, and one
backward pass gives each run's gradient w.r.t. its own copy of the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

import catlog


@dataclass
class Problem:
    """``E_{X ~ Cat(logits)}[f(X)]`` for ``R`` runs, with per-run parameter copies ``params``."""

    params: list[torch.Tensor]
    logits: torch.Tensor
    f: Callable[[torch.Tensor], torch.Tensor]

    def gradients(self, value: torch.Tensor) -> torch.Tensor:
        """Per-run gradients ``[R, P]`` of ``value: [R, *B]`` summed over ``*B``."""
        grads = torch.autograd.grad(value.sum(), self.params)
        return torch.cat([g.flatten(1) for g in grads], dim=1)


ProblemMaker = Callable[[int, int], Problem]


def exact(make: ProblemMaker, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``(E[f]: [*B], gradient: [P])`` of problem ``make(seed, runs=1)`` by enumeration."""
    problem = make(seed, 1)
    value = catlog.Exact()(problem.f, problem.logits)
    return value.detach()[0], problem.gradients(value)[0]


def estimates(
    make: ProblemMaker, estimator: catlog.Estimator, runs: int, seed: int, sample_seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``runs`` independent estimates: values ``[R, *B]`` and gradients ``[R, P]``."""
    problem = make(seed, runs)
    value = estimator(problem.f, problem.logits, generator=torch.Generator().manual_seed(sample_seed))
    return value.detach(), problem.gradients(value)


def _parameter(generator: torch.Generator, runs: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    base = scale * torch.randn(*shape, generator=generator, dtype=torch.float64)
    return base.expand(runs, *shape).clone().requires_grad_(True)


def nonseparable(seed: int, runs: int, num_categories: int = 4) -> Problem:
    """No batch, ``D = 3``, ``K = num_categories``, logits as free parameters, ``f`` whose terms interact."""
    generator = torch.Generator().manual_seed(seed)
    logits = _parameter(generator, runs, 3, num_categories)
    target = torch.randint(0, num_categories, (3,), generator=generator)

    def f(x: torch.Tensor) -> torch.Tensor:
        distance = (x - target).abs().sum(-1).double()
        return distance**2 / 3 + torch.cos(x[..., 0] * x[..., 1]).double()

    return Problem([logits], logits, f)


def batched_network(seed: int, runs: int) -> Problem:
    """Batch ``[2, 3]``, ``D = 3, K = 3``, logits from a linear network with shared weights."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    weight, bias = _parameter(generator, runs, 5, 9, scale=0.5), _parameter(generator, runs, 9, scale=0.5)
    target = torch.randint(0, 3, (2, 3, 3), generator=generator)

    def f(x: torch.Tensor) -> torch.Tensor:
        return ((x - target) ** 2).sum(-1).double().sqrt() * (1 + x[..., 2])

    logits = torch.einsum("bcf,rfo->rbco", inputs, weight) + bias[:, None, None, :]
    return Problem([weight, bias], logits.view(runs, 2, 3, 3, 3), f)


def mixed_cardinalities(seed: int, runs: int) -> Problem:
    """Batch ``[2]``, variables of 2, 4 and 3 categories padded with ``-inf`` to ``K = 4``.

    ``f`` looks values up in a table holding NaN at impossible categories, so an
    estimator that hands ``f`` an impossible value fails with a ``ValueError``.
    """
    generator = torch.Generator().manual_seed(seed)
    logits = _parameter(generator, runs, 2, 3, 4)
    impossible = torch.arange(4) >= torch.tensor([2, 4, 3])[:, None]
    table = torch.randn(3, 4, generator=generator, dtype=torch.float64).masked_fill(impossible, math.nan)

    def f(x: torch.Tensor) -> torch.Tensor:
        looked_up = table[torch.arange(3), x]
        return looked_up.sum(-1) * looked_up.prod(-1)

    return Problem([logits], logits.masked_fill(impossible, -math.inf), f)


def parametrised_f(seed: int, runs: int, num_categories: int = 3) -> Problem:
    """Batch ``[3]``, ``D = 4``, ``K = num_categories``; ``f`` is a small decoder with parameters of its own,
    so the gradient has a pathwise part ``E[grad f]``."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    encoder = _parameter(generator, runs, 4, 4 * num_categories, scale=0.5)
    embedding, readout = _parameter(generator, runs, num_categories, 2), _parameter(generator, runs, 4 * 2)
    data = torch.randn(3, generator=generator, dtype=torch.float64)
    run = torch.arange(runs).view(runs, 1, 1)

    def f(x: torch.Tensor) -> torch.Tensor:
        features = embedding[run, x].flatten(-2)
        return (torch.tanh((features * readout[:, None, :]).sum(-1)) - data) ** 2

    logits = torch.einsum("bi,rio->rbo", inputs, encoder).view(runs, 3, 4, num_categories)
    return Problem([encoder, embedding, readout], logits, f)


PROBLEMS: tuple[ProblemMaker, ...] = (nonseparable, batched_network, mixed_cardinalities, parametrised_f)


def smooth_decoder(seed: int, runs: int) -> Problem:
    """Batch ``[3]``, ``D = 4, K = 3``; ``f`` is smooth in the category values (relaxed ones
    too) and has parameters of its own, so relaxed estimators have a pathwise part."""
    generator = torch.Generator().manual_seed(seed)
    logits = _parameter(generator, runs, 3, 4, 3)
    weight, offset = _parameter(generator, runs, 4, 2), _parameter(generator, runs, 2)
    data = torch.randn(3, 2, generator=generator, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(torch.einsum("r...d,rdo->r...o", x.movedim(1, 0).double(), weight) + offset[:, None, None])
        return ((hidden - data) ** 2).sum(-1).movedim(0, 1)

    return Problem([logits, weight, offset], logits, f)


def binary_nonseparable(seed: int, runs: int) -> Problem:
    """:func:`nonseparable` with ``K = 2``."""
    return nonseparable(seed, runs, num_categories=2)


def binary_one_possible_value(seed: int, runs: int) -> Problem:
    """Batch ``[2]``, ``D = 5, K = 2``; in each batch element one variable can only be 0
    and one only 1 (a ``-inf`` logit), at different places.

    ``f`` looks values up in a table holding NaN at impossible values, so an estimator
    that hands ``f`` an impossible value fails with a ``ValueError``.
    """
    generator = torch.Generator().manual_seed(seed)
    logits = _parameter(generator, runs, 2, 5, 2, scale=1.5)
    impossible = torch.zeros(2, 5, 2, dtype=torch.bool)
    impossible[0, 1, 1] = impossible[0, 3, 0] = impossible[1, 0, 0] = impossible[1, 4, 1] = True
    table = torch.randn(2, 5, 2, generator=generator, dtype=torch.float64).masked_fill(impossible, math.nan)
    batch, variables = torch.arange(2).view(2, 1), torch.arange(5)

    def f(x: torch.Tensor) -> torch.Tensor:
        looked_up = table[batch, variables, x]
        return torch.sin(looked_up.sum(-1)) + looked_up[..., 0] * looked_up[..., 2] * looked_up[..., 4]

    return Problem([logits], logits.masked_fill(impossible, -math.inf), f)


def binary_parametrised_f(seed: int, runs: int) -> Problem:
    """:func:`parametrised_f` with ``K = 2``: logits from an encoder, ``f`` a decoder with parameters."""
    return parametrised_f(seed, runs, num_categories=2)


BINARY_PROBLEMS: tuple[ProblemMaker, ...] = (binary_nonseparable, binary_one_possible_value, binary_parametrised_f)
