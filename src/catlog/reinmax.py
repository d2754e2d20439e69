"""ReinMax: straight-through with a second-order (Heun's method) backward pass (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._relaxed import Relaxed, relaxed_estimate
from catlog._sampling import sample_by_inversion


class ReinMax(Relaxed):
    """ReinMax: ``1/N sum_n f(y_n)`` with hard one-hot samples ``y_n ~ Cat(softmax(theta))``
    forward and a second-order approximation of the gradient backward.

    With ``theta`` the logits of a variable (Liu et al., "Bridging Discrete and
    Backpropagation: Straight-Through and Beyond", NeurIPS 2023, the ReinMax algorithm):

    - ``pi0 = softmax(theta)``,
    - ``pi1 = (y + softmax(theta / temperature)) / 2``,
    - ``pi1 = softmax(stopgrad(log pi1 - theta) + theta)`` (the same value, with the
      softmax Jacobian at ``pi1``),
    - ``pi2 = 2 pi1 - pi0 / 2``,

    and ``f`` receives ``y + pi2 - stopgrad(pi2)``: exactly ``y`` forward, so that
    ``grad theta = (2 (diag(pi1) - pi1 pi1^T) - (diag(pi0) - pi0 pi0^T) / 2) df/dy``.
    Biased. ``f`` receives the category value ``sum_k k * y_k`` as a float ``[M, *B, D]``
    tensor, or the one-hot itself with ``one_hot``. Impossible categories (``-inf``
    logits) are never drawn and get zero gradient.

    Args:
        num_samples: ``N >= 1`` samples, each evaluated once.
        temperature: ``> 0``, of ``softmax(theta / temperature)`` in ``pi1``; the paper
            recommends ``>= 1``. May be reassigned between calls.
        one_hot, generator, validate_args, chunk_size: see :class:`~catlog.estimator.Estimator`.
    """

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        hard = sample_by_inversion(log_probs.detach().exp(), (self.num_samples,), generator)  # [N, *B, D]
        # category first, [K, N, *B, D], as relaxed_estimate takes it
        theta = log_probs.movedim(-1, 0).unsqueeze(1)
        fixed = theta.detach()
        categories = torch.arange(theta.shape[0], device=theta.device).view(-1, *([1] * (theta.ndim - 1)))
        pi0 = theta.exp()
        tempered = (fixed / self.temperature).softmax(0)

        def relax(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pi1 = ((categories == rows).to(theta.dtype) + tempered) / 2
            shift = (pi1.log() - fixed).masked_fill(fixed == -math.inf, 0.0)
            return 2 * (shift + theta).softmax(0) - pi0 / 2, rows

        return relaxed_estimate(objective, relax, hard)
