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
    r"""Gumbel-Softmax (the concrete relaxation), straight-through by default.

    $$
    \mathbb{E}[f(X)] \approx \frac{1}{N} \sum_{n=1}^{N} f(y_n), \qquad
    y_n = \mathrm{softmax}\big((\log p + G_n) / \tau\big), \qquad G_n \sim \mathrm{Gumbel}(0, 1)^{D \times K},
    $$

    differentiated through $y_n$. With ``straight_through`` the forward pass uses the
    hard one-hot $\mathrm{onehot}(\arg\max_k y_{nk})$, exactly, and the backward pass
    the soft $y_n$. **Biased**: use it where ``f`` is a smooth function that accepts
    relaxed values. ``f`` receives the relaxed category value $\sum_k k\, y_{nk}$ as a
    float ``[N, *B, D]``, or $y_n$ itself (``[N, *B, D, K]``) with ``one_hot``.

    Shapes:
        - dist: logits ``[*B, D, K]`` or a factorised categorical distribution.
        - f: ``Tensor[N, *B, D] -> Tensor[N, *B]`` (float; one-hot with ``one_hot``).
        - returns: ``Tensor[*B]``.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element.

    Args:
        num_samples: ``N >= 1`` relaxed samples.
        temperature: $\tau > 0$; may be reassigned between calls (annealing).
        straight_through: hard forward values, soft gradients.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: for ``num_samples < 1``, a temperature that is not positive, and
            bad input in the call (an ``Autoregressive`` is refused).

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.GumbelSoftmax(10, 0.5)(lambda x: (x - 1.5).square().sum(-1), logits).backward()
        >>> logits.grad.shape
        torch.Size([3, 4])
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
