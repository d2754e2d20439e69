"""ReinMax: straight-through with a second-order (Heun's method) backward pass (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._relaxed import Relaxed, relaxed_estimate
from catlog._sampling import sample_by_inversion


class ReinMax(Relaxed):
    r"""ReinMax: straight-through with a second-order backward pass (Liu et al., NeurIPS 2023).

    ``f`` is evaluated on hard one-hot samples $y_n \sim \mathrm{Cat}(\mathrm{softmax}(\theta))$,
    $\frac{1}{N} \sum_n f(y_n)$, exactly; backward, with $\pi_0 = \mathrm{softmax}(\theta)$
    and $\pi_1 = \big(y + \mathrm{softmax}(\theta / \tau)\big) / 2$ (its softmax
    Jacobian taken at $\pi_1$),

    $$
    \nabla_\theta \approx \Big(2 \big(\mathrm{diag}(\pi_1) - \pi_1 \pi_1^\top\big)
    - \tfrac{1}{2} \big(\mathrm{diag}(\pi_0) - \pi_0 \pi_0^\top\big)\Big)\, \frac{\partial f}{\partial y}.
    $$

    **Biased**; for an ``f`` that accepts relaxed values. ``f`` receives the category
    value $\sum_k k\, y_k$ as a float ``[N, *B, D]``, or the one-hot itself with
    ``one_hot``. Impossible categories (``-inf`` logits) are never drawn and get zero gradient.

    Shapes:
        As :class:`GumbelSoftmax`.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element.

    Args:
        num_samples: ``N >= 1`` samples, each evaluated once.
        temperature: $\tau > 0$ in $\pi_1$; the paper recommends $\tau \ge 1$. May be
            reassigned between calls.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: as :class:`GumbelSoftmax`.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.ReinMax(10)(lambda x: (x - 1.5).square().sum(-1), logits).backward()
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
