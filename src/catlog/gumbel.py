"""The Gumbel-Softmax (concrete) relaxation, with or without straight-through."""

from __future__ import annotations

import torch

from catlog._objective import Objective
from catlog._relaxed import Relaxed, relaxed_estimate
from catlog._sampling import gumbel_noise, logistic_noise
from catlog._validation import check_flag

CATEGORY_LAST_FROM = 16
"""From this ``K`` on, :class:`GumbelSoftmax` draws its noise ``[N, *B, D, K]`` (below, ``[K, N, *B, D]``)."""


class GumbelSoftmax(Relaxed):
    """Gumbel-Softmax: ``1/N sum_n f(y_n)``, ``y_n = softmax((log p + G_n) / temperature)``.

    Biased. With ``straight_through`` the forward pass uses the hard one-hot
    ``onehot(argmax y_n)`` (exactly) and the backward pass the soft ``y_n``.
    ``f`` receives the relaxed category value ``sum_k k * y_nk`` as a float
    ``[M, *B, D]`` tensor, or ``y_n`` itself with ``one_hot``.

    Args:
        num_samples: ``N >= 1`` relaxed samples, each evaluated once.
        temperature: ``> 0``; may be reassigned between calls (annealing).
        straight_through: hard forward values, soft gradients.
        one_hot, generator, validate_args, chunk_size: see :class:`~catlog.estimator.Estimator`.
    """

    def __init__(
        self,
        num_samples: int,
        temperature: float = 1.0,
        *,
        straight_through: bool = True,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples,
            temperature,
            one_hot=one_hot,
            generator=generator,
            validate_args=validate_args,
            chunk_size=chunk_size,
        )
        self.straight_through = check_flag("straight_through", straight_through)

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        num_categories = logits.shape[-1]
        if num_categories == 2:
            return self._estimate_binary(objective, logits, generator)
        # category first ([K, N, *B, D]): softmax and argmax over K are then fast for small K; from
        # CATEGORY_LAST_FROM categories the noise is drawn category last, which compiled code then
        # follows (eager times are the same either way; see docs/performance_guide.md)
        log_probs = logits.log_softmax(-1).movedim(-1, 0).unsqueeze(1)
        if num_categories >= CATEGORY_LAST_FROM:
            noise = gumbel_noise((self.num_samples, *logits.shape), logits, generator).movedim(-1, 1)
        else:
            noise = gumbel_noise((num_categories, self.num_samples, *logits.shape[:-1]), logits, generator).movedim(
                1, 0
            )

        def relax(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            scores = (rows.movedim(1, 0) + log_probs) / self.temperature
            return scores.softmax(0), scores.detach().max(0).indices if self.straight_through else None

        return relaxed_estimate(objective, relax, noise)  # noise: [N, K, *B, D], rows first

    def _estimate_binary(
        self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """:meth:`_estimate` for ``K = 2``: ``y_1 = sigmoid((l_1 - l_0 + L) / temperature)`` with
        logistic ``L`` (the law of ``G_1 - G_0``), one uniform per variable instead of two Gumbels;
        the same distribution of ``y`` and of the hard sample ``1[y_1 > 1/2]``, other draws."""
        noise = logistic_noise((self.num_samples, *logits.shape[:-1]), logits, generator)
        difference = logits[..., 1] - logits[..., 0]

        def relax(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            scores = (difference + rows) / self.temperature
            one = scores.sigmoid()
            return torch.stack([1 - one, one]), (scores.detach() > 0).long() if self.straight_through else None

        return relaxed_estimate(objective, relax, noise)
