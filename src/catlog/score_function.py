"""Score-function estimators: REINFORCE (paper eq. 2.4), REINFORCE leave-one-out and GRPO's advantage."""

from __future__ import annotations

import math

import torch

from catlog._binary import log_softmax
from catlog._objective import Objective
from catlog._sampling import sample_by_inversion
from catlog._surrogate import sum_by_category
from catlog._validation import Checked, check_samples
from catlog.autoregressive import Autoregressive, _sequence_log_prob
from catlog.estimator import Cost, Estimator


class REINFORCE(Estimator):
    r"""REINFORCE, the score-function estimator (paper eq. 2.4).

    $$
    \nabla \mathbb{E}[f(X)] \approx \frac{1}{N} \sum_{n=1}^{N} f\big(x^{(n)}\big)\,
    \nabla \log p\big(x^{(n)}\big), \qquad x^{(n)} \sim p,
    $$

    plus the pathwise term $\frac{1}{N} \sum_n \nabla f(x^{(n)})$ for parameters that
    ``f`` uses. Unbiased; its variance grows with $f^2$, as nothing is subtracted from
    ``f`` (:class:`RLOO` subtracts a baseline). The value returned is the sample mean of ``f``.
    Takes an :class:`~catlog.Autoregressive` too ($\log p(x) = \sum_d \log p(x_d \mid x_{<d})$).

    Shapes:
        - dist: logits ``[*B, D, K]``, a factorised categorical distribution or an ``Autoregressive``.
        - f: ``LongTensor[N, *B, D] -> Tensor[N, *B]`` (one-hot with ``one_hot``).
        - returns: ``Tensor[*B]``.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element.

    Args:
        num_samples: ``N >= 1`` joint samples, each evaluated once.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: for ``num_samples < 1``, and for bad input in the call.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.REINFORCE(10)(lambda x: x.sum(-1).float(), logits).backward()
        >>> logits.grad.shape
        torch.Size([3, 4])
    """

    num_samples = Checked(check_samples(1))

    def __init__(
        self,
        num_samples: int,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_samples = num_samples

    def compute_cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples and ``N`` evaluations."""
        return Cost(samples=self.num_samples, evaluations=self.num_samples)

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """The weight of each sample's score ``grad log p(x_n)`` in the estimate, ``1/N f(x_n)``. Shapes ``[N, *B]``."""
        return values / values.shape[0]

    def estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        log_probs = log_softmax(logits)
        samples = sample_by_inversion(log_probs.detach().exp(), (self.num_samples,), generator)
        values = objective(samples)
        with torch.no_grad():
            weights = self._weights(values.detach())
            per_category = sum_by_category(samples, weights, logits.shape[-1])
        # -inf at impossible categories, and where a finite logit is so far below another that p underflows
        centred = (log_probs - log_probs.detach()).masked_fill(log_probs.detach() == -math.inf, 0.0)
        return values.mean(0) + (per_category * centred).sum((-2, -1))

    def estimate_autoregressive(
        self, objective: Objective, dist: Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``1/N sum_n w_n grad log p(x_n)``, ``log p(x) = sum_d log p(x_d | x_<d)`` from ``D`` calls."""
        samples, logits = dist.draw(dist.gumbel_noise(self.num_samples, generator))
        values = objective(samples)
        log_p = _sequence_log_prob(logits, samples)
        weights = self._weights(values.detach())
        return values.mean(0) + (weights * (log_p - log_p.detach())).sum(0)


class RLOO(REINFORCE):
    r"""REINFORCE leave-one-out: the score-function estimator with the other samples' mean as baseline.

    $$
    \nabla \mathbb{E}[f(X)] \approx \frac{1}{N-1} \sum_{n=1}^{N}
    \Big(f\big(x^{(n)}\big) - \frac{1}{N} \sum_{m=1}^{N} f\big(x^{(m)}\big)\Big)\,
    \nabla \log p\big(x^{(n)}\big), \qquad x^{(n)} \sim p,
    $$

    plus the pathwise term for parameters that ``f`` uses. Unbiased (each sample's
    baseline is independent of it), with far less variance than :class:`REINFORCE`
    where $\mathbb{E}[f]$ is large compared with the spread of ``f``. The value
    returned is the sample mean of ``f``. Takes an :class:`~catlog.Autoregressive` too.

    Shapes:
        As :class:`REINFORCE`.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element.

    Args:
        num_samples: ``N >= 2`` joint samples, each evaluated once.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: for ``num_samples < 2``, and for bad input in the call.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.RLOO(10)(lambda x: x.sum(-1).float(), logits).backward()
        >>> catlog.RLOO(10).cost(3, 4)
        Cost(samples=10, evaluations=10)
    """

    num_samples = Checked(check_samples(2))

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """``(f(x_n) - mean_m f(x_m)) / (N - 1)``: their sum is the RLOO estimate's."""
        return (values - values.mean(0)) / (values.shape[0] - 1)


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
    mean ``1/N sum_n f(x_n)``, unbiased. Takes an :class:`~catlog.Autoregressive` too.

    Shapes:
        As :class:`REINFORCE`.

    Cost:
        ``N`` samples and ``N`` evaluations of ``f`` per batch element.

    Args:
        num_samples: ``N >= 2`` joint samples, each evaluated once.
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: for ``num_samples < 2``, and for bad input in the call.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)
        >>> catlog.GRPO(10)(lambda x: x.sum(-1).float(), logits).backward()
        >>> catlog.GRPO(10).cost(3, 4)
        Cost(samples=10, evaluations=10)
    """

    epsilon = 1e-4

    def _weights(self, values: torch.Tensor) -> torch.Tensor:
        """``1/N (f(x_n) - mean_m f(x_m)) / (std_m f(x_m) + eps)``, shapes ``[N, *B]``."""
        return (values - values.mean(0)) / ((values.std(0) + self.epsilon) * values.shape[0])
