"""DisARM: antithetic pairs for binary variables (Dong, Mnih and Tucker, NeurIPS 2020)."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._validation import check_count
from catlog.estimator import Cost, Estimator


class DisARM(Estimator):
    """DisARM for ``D`` binary variables (``K = 2``), with ``alpha_d = logit_d1 - logit_d0``.

    Each pair draws ``u ~ Uniform(0, 1)^D`` and evaluates ``f`` on the antithetic samples
    ``b = 1[u < sigmoid(alpha)]`` and ``b~ = 1[1 - u < sigmoid(alpha)]`` (whole vectors
    over ``d``; each is marginally a sample of ``p``). The estimate of ``d E[f] / d alpha_d``
    is, averaged over the ``P`` pairs (Dong, Mnih and Tucker, "DisARM: An Antithetic
    Gradient Estimator for Binary Latent Variables", NeurIPS 2020, its multivariate form):

    ``g_d = 1/2 (f(b) - f(b~)) (-1)^{b~_d} 1[b_d != b~_d] sigmoid(|alpha_d|)``
    ``    = 1/2 (f(b) - f(b~)) (b_d - b~_d) sigmoid(|alpha_d|)``.

    It is unbiased: given ``u_{!=d}``, ``b_d != b~_d`` has probability
    ``2 sigmoid(-|alpha_d|)``, split evenly between ``(b_d, b~_d) = (1, 0)`` and ``(0, 1)``,
    so ``E[g_d] = sigmoid(alpha_d) sigmoid(-alpha_d) (E f(1, X_{!=d}) - E f(0, X_{!=d}))
    = d E[f] / d alpha_d``. The logits receive ``g_d`` at category 1 and ``-g_d`` at
    category 0 (``d alpha_d / d logit_d1 = 1``, ``d alpha_d / d logit_d0 = -1``). The value
    is the mean of ``f`` over the ``2 P`` samples, and its gradient to parameters of ``f``
    the pathwise term ``E[grad f]``. A variable with one possible value (a ``-inf`` logit)
    takes that value in both samples and gets zero gradient.

    Args:
        num_pairs: ``P >= 1`` antithetic pairs: ``2 P`` samples, each evaluated once.
        one_hot, generator, validate_args, chunk_size: see :class:`~catlog.estimator.Estimator`.
    """

    def __init__(
        self,
        num_pairs: int,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_pairs = check_count("num_pairs", num_pairs, 1)

    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """``2 P`` samples and ``2 P`` evaluations."""
        return Cost(samples=2 * self.num_pairs, evaluations=2 * self.num_pairs)

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if logits.shape[-1] != 2:
            raise ValueError(
                f"dist: DisARM expects binary variables, shape [*B, D, 2], got K = {logits.shape[-1]} "
                f"categories (shape {tuple(logits.shape)}); use IndeCateR or RLOO for K != 2"
            )
        probs = logits.detach().softmax(-1)
        # u >= tiny: a variable with p_1 = 1 (p_0 = 0) then has b = b~ = 1 exactly
        uniform = torch.rand(
            (self.num_pairs, *logits.shape[:-1]), dtype=logits.dtype, device=logits.device, generator=generator
        ).clamp_min_(torch.finfo(logits.dtype).tiny)
        # 1 - u < p_1 written as u > p_0, exact when p_0 = 0
        pairs = torch.stack([uniform < probs[..., 1], uniform > probs[..., 0]])  # [2, P, *B, D]: b, b~
        values = objective(pairs.flatten(0, 1).long()).reshape(pairs.shape[:-1])
        with torch.no_grad():
            difference = (values[0] - values[1]).unsqueeze(-1)  # [P, *B, 1]
            flips = pairs[0].to(logits.dtype) - pairs[1].to(logits.dtype)  # b_d - b~_d
            coefficient = (difference * flips).mean(0) * probs.amax(-1) / 2  # g_d, [*B, D]
        one_possible_value = (logits.detach() == -math.inf).any(-1)
        alpha = (logits[..., 1] - logits[..., 0]).masked_fill(one_possible_value, 0.0)
        score = (coefficient * alpha).sum(-1)
        return values.mean((0, 1)) + (score - score.detach())
