"""The relaxed estimators' shared parts: what they hand ``f`` (soft samples, or hard ones with a
soft backward pass), their sample count, temperature and cost."""

from __future__ import annotations

from collections.abc import Callable

import torch

from catlog._objective import Objective
from catlog._validation import Checked, check_positive, check_samples
from catlog.estimator import Cost, Estimator

Relax = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
"""Maps chunks of rows ``[m, ...]`` to ``(soft, hard)``: ``soft: [K, m, *B, D]``, category first, the relaxed
one-hot vectors with autograd; ``hard: LongTensor[m, *B, D]``, the categories of the forward values, or ``None``."""


def relaxed_estimate(objective: Objective, relax: Relax, *rows: torch.Tensor) -> torch.Tensor:
    """The mean over rows of ``f`` on relaxed samples; returns ``Tensor[*B]``.

    The samples of each chunk of ``objective.chunk_size`` rows are relaxed by ``relax`` from
    that chunk of every tensor of ``rows`` (each ``[M, ...]``, rows first), just before ``f``
    sees them, so that no temporary holds more than a chunk. Without ``hard``, ``f`` receives
    ``soft`` itself. With ``hard`` (straight-through), it receives the hard one-hot
    ``y = onehot(hard)`` forward, exactly, and ``soft``'s gradient backward:
    ``y + soft - stopgrad(soft)``. Unless ``objective.one_hot``, ``f`` receives the relaxed
    category value ``sum_k k * y_k`` instead of ``y``.
    """

    def evaluate(*chunk: torch.Tensor) -> torch.Tensor:
        soft, hard = relax(*chunk)
        shape = (-1, *([1] * (soft.ndim - 1)))
        categories = torch.arange(soft.shape[0], dtype=soft.dtype, device=soft.device).view(shape)
        if objective.one_hot:
            relaxed = soft if hard is None else (categories == hard).to(soft.dtype) + (soft - soft.detach())
            return objective.relaxed(relaxed.movedim(0, -1))
        values = (soft * categories).sum(0)
        if hard is not None:
            values = hard.to(soft.dtype) + (values - values.detach())
        return objective.relaxed(values)

    return objective.by_chunks(evaluate, *rows).mean(0)


class Relaxed(Estimator):
    """What the relaxed estimators share: ``f`` is evaluated once, on ``N`` samples
    relaxed at a ``temperature`` (their forward values, their backward pass or both).

    Args:
        num_samples: ``N >= 1`` samples, each evaluated once.
        temperature: ``> 0``; may be reassigned between calls (annealing).
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.
    """

    num_samples = Checked(check_samples(1))

    def __init__(
        self,
        num_samples: int,
        temperature: float = 1.0,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_samples = num_samples
        self.temperature = temperature

    @property
    def temperature(self) -> float:
        """The relaxation temperature, ``> 0``; checked on every assignment (annealing too)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_positive("temperature", value)

    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples and ``N`` evaluations."""
        return Cost(samples=self.num_samples, evaluations=self.num_samples)
