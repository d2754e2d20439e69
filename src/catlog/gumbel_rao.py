"""Gumbel-Rao: straight-through Gumbel-Softmax, Rao-Blackwellised over the noise
(Paulus, Maddison and Krause, ICLR 2021)."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._relaxed import Relaxed, relaxed_estimate
from catlog._sampling import gumbel_noise, log_exponential_noise, sample_by_inversion
from catlog._validation import Checked, check_samples


def conditional_gumbel(
    logits: torch.Tensor, hard: torch.Tensor, num_draws: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Gumbel noise ``G`` drawn given that ``argmax_k (logits_k + G_k) = hard``.

    The maximum ``z_h = logits_h + G_h`` (``h = hard``) is ``Gumbel(logsumexp(logits))``
    and independent of the argmax; given it, every other ``z_k = logits_k + G_k`` is
    ``Gumbel(logits_k)`` truncated below ``z_h``, drawn by inversion as
    ``z_k = -log(exp(-z_h) + exp(-logits_k) E_k)`` with ``E_k ~ Exponential(1)``.

    Args:
        logits: ``[*B, D, K]``; ``-inf`` marks an impossible category. With autograd, ``G``
            is differentiable in them for fixed uniforms (the reparameterisation of
            ``z = logits + G`` given ``hard`` that REBAR and RELAX use).
        hard: ``LongTensor[N, *B, D]``, possible categories.
        num_draws: ``R``, draws of ``G`` for every sample.
        generator: optional torch generator.

    Returns:
        ``G: [K, R, N, *B, D]``, category first; ``0`` at impossible categories.
    """
    theta = logits.movedim(-1, 0).unsqueeze(1).unsqueeze(1)  # [K, 1, 1, *B, D]
    shape = (num_draws, *hard.shape)
    top = gumbel_noise(shape, logits, generator) + theta.logsumexp(0)
    log_exponential = log_exponential_noise((theta.shape[0], *shape), logits, generator)
    below = -torch.logaddexp(-top, log_exponential - theta.clamp_min(torch.finfo(theta.dtype).min))
    categories = torch.arange(theta.shape[0], device=logits.device).view(-1, *([1] * len(shape)))
    perturbed = torch.where(categories == hard, top, below)
    return (perturbed - theta).masked_fill(theta == -math.inf, 0.0)


class GumbelRao(Relaxed):
    r"""Gumbel-Rao: straight-through Gumbel-Softmax with its backward pass averaged over the noise
    given the sample (Paulus, Maddison and Krause, ICLR 2021).

    ``f`` is evaluated on hard one-hot samples $y_n \sim \mathrm{Cat}(\mathrm{softmax}(\theta))$,
    exactly; backward, on the gradient of the relaxation

    $$
    s_n = \frac{1}{R} \sum_{r=1}^{R} \mathrm{softmax}\big((\theta + G_{nr}) / \tau\big),
    \qquad G_{nr} \sim \mathrm{Gumbel} \mid \arg\max_k (\theta_k + G_k) = y_n.
    $$

    With ``R = 1`` it is straight-through Gumbel-Softmax in distribution; as ``R`` grows
    it tends to that estimator's conditional expectation given $y_n$: the same mean,
    never more variance (the Rao-Blackwell theorem). **Biased**. ``f`` receives the
    category value $\sum_k k\, y_k$ as a float ``[N, *B, D]``, or the one-hot itself with
    ``one_hot``. Impossible categories (``-inf`` logits) are never drawn and get zero gradient.

    Shapes:
        As :class:`GumbelSoftmax`.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element (the ``R`` noise
        draws are not evaluated).

    Args:
        num_samples: ``N >= 1`` hard samples, each evaluated once.
        num_rao_samples: ``R >= 1`` draws of the noise per sample.
        temperature: $\tau > 0$; may be reassigned between calls (annealing).
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: as :class:`GumbelSoftmax`, and for ``num_rao_samples < 1``.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.GumbelRao(2, 10)(lambda x: (x - 1.5).square().sum(-1), logits).backward()
    """

    num_rao_samples = Checked(check_samples(1))

    def __init__(
        self,
        num_samples: int,
        num_rao_samples: int,
        temperature: float = 1.0,
        *,
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
        self.num_rao_samples = num_rao_samples

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        log_probs = logits.log_softmax(-1)
        fixed = log_probs.detach()
        hard = sample_by_inversion(fixed.exp(), (self.num_samples,), generator)  # [N, *B, D]
        noise = conditional_gumbel(fixed, hard, self.num_rao_samples, generator)  # [K, R, N, *B, D]
        theta = log_probs.movedim(-1, 0).unsqueeze(1).unsqueeze(1)

        def relax(rows: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return ((theta + draws.movedim(0, 2)) / self.temperature).softmax(0).mean(1), rows

        return relaxed_estimate(objective, relax, hard, noise.movedim(2, 0))
