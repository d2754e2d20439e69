"""Score-function estimators: REINFORCE (paper eq. 2.4) and REINFORCE leave-one-out."""

from __future__ import annotations

import math

import torch

from catlog._binary import log_softmax
from catlog._objective import Objective
from catlog._sampling import sample_by_inversion
from catlog._surrogate import sum_by_category
from catlog._validation import check_count
from catlog.autoregressive import Autoregressive, _sequence_log_prob
from catlog.estimator import Cost, Estimator


class REINFORCE(Estimator):
    """REINFORCE (paper eq. 2.4): ``1/N sum_n f(x_n) grad log p(x_n)`` plus the pathwise term.

    ``log p(x) = sum_d log p_d(x_d)``, so the score term is computed as
    ``sum_{d,k} w_dk grad log p_d(k)`` with ``w_dk = 1/N sum_n f(x_n) 1[x_nd = k]``.

    Args:
        num_samples: ``N >= 1`` joint samples, each evaluated once.
        one_hot, generator, validate_args: see :class:`~catlog.estimator.Estimator`.
    """

    min_samples = 1

    def __init__(
        self,
        num_samples: int,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args)
        self.num_samples = check_count("num_samples", num_samples, self.min_samples)

    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples and ``N`` evaluations."""
        return Cost(samples=self.num_samples, evaluations=self.num_samples)

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """The weight of each sample's score ``grad log p(x_n)``: ``f(x_n)``. Shapes ``[N, *B]``."""
        return values

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        log_probs = log_softmax(logits)
        samples = sample_by_inversion(log_probs.detach().exp(), (self.num_samples,), generator)
        values = objective(samples)
        with torch.no_grad():
            weights = self._weights(values.detach()) / self.num_samples
            per_category = sum_by_category(samples, weights, logits.shape[-1])
        centred = (log_probs - log_probs.detach()).masked_fill(logits.detach() == -math.inf, 0.0)
        return values.mean(0) + (per_category * centred).sum((-2, -1))

    def _estimate_autoregressive(
        self, objective: Objective, dist: Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``1/N sum_n w_n grad log p(x_n)``, ``log p(x) = sum_d log p(x_d | x_<d)`` from ``D`` calls."""
        samples, logits = dist._draw(dist._gumbel(self.num_samples, generator))
        values = objective(samples)
        log_p = _sequence_log_prob(logits, samples)
        weights = self._weights(values.detach()) / self.num_samples
        return values.mean(0) + (weights * (log_p - log_p.detach())).sum(0)


class RLOO(REINFORCE):
    """REINFORCE leave-one-out: ``1/(N-1) sum_n (f(x_n) - 1/N sum_m f(x_m)) grad log p(x_n)``.

    Args:
        num_samples: ``N >= 2`` joint samples, each evaluated once.
        one_hot, generator, validate_args: see :class:`~catlog.estimator.Estimator`.
    """

    min_samples = 2

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """``N/(N-1) * (f(x_n) - mean_m f(x_m))``, so that the mean over ``n`` is the RLOO sum."""
        num = values.shape[0]
        return (values - values.mean(0)) * (num / (num - 1))


class GRPO(RLOO):
    """The group-normalised advantage of GRPO: ``1/N sum_n (f(x_n) - m) / (s + eps) grad log p(x_n)``.

    ``m`` and ``s`` are the mean and the standard deviation (Bessel-corrected) of
    ``f(x_1), ..., f(x_N)``, the ``N`` samples of one batch element (the "group"),
    and ``eps`` = :attr:`epsilon` keeps a group of equal values finite (its weights
    are then all zero). Dividing by ``s``, a function of the samples, makes the
    estimate **biased**: its mean is not ``grad E[f]`` but, on a group whose values
    vary, roughly ``grad E[f] / sd(f)``, a gradient rescaled per batch element and
    per draw. It is the advantage of GRPO (Shao et al., 2024, "DeepSeekMath") as
    commonly used, without its clipping or KL penalty. The value returned is the
    mean ``1/N sum_n f(x_n)``, unbiased.

    Args:
        num_samples: ``N >= 2`` joint samples, each evaluated once.
        one_hot, generator, validate_args: see :class:`~catlog.estimator.Estimator`.
    """

    epsilon = 1e-4

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """``(f(x_n) - mean_m f(x_m)) / (std_m f(x_m) + eps)``, shapes ``[N, *B]``."""
        return (values - values.mean(0)) / (values.std(0) + self.epsilon)
