"""The shape every estimator shares: ``est(f, logits) -> Tensor[*B]``."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import NamedTuple

import torch

from catlog._objective import Objective
from catlog._validation import check_logits
from catlog.autoregressive import Autoregressive


class Cost(NamedTuple):
    """What one estimate costs per batch element.

    Attributes:
        samples: how many joint samples ``x ~ p`` are drawn.
        evaluations: how many rows ``f`` is evaluated on.
    """

    samples: int
    evaluations: int


class Estimator(abc.ABC):
    """A gradient estimator for ``E_{X ~ Cat(softmax(logits))}[f(X)]``.

    Calling it returns ``value: Tensor[*B]``, a Monte-Carlo (or exact) estimate of
    ``E[f(X)]`` whose gradient is the estimator's: the logits receive the estimator's
    score or relaxation term, and parameters that ``f`` uses receive the pathwise
    term ``E[grad f]``.

    Args:
        one_hot: hand ``f`` float one-hot vectors ``[M, *B, D, K]`` instead of
            category indices ``LongTensor[M, *B, D]``; a call may override it.
        generator: default torch generator for the samples; a call may override it.
    """

    def __init__(self, *, one_hot: bool = False, generator: torch.Generator | None = None) -> None:
        self.one_hot = bool(one_hot)
        self.generator = generator

    def __call__(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        logits: torch.Tensor | Autoregressive,
        *,
        one_hot: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Estimate ``E[f(X)]``, ``X_d ~ Cat(softmax(logits[..., d, :]))`` independent,
        or ``X ~ logits`` when it is an :class:`~catlog.autoregressive.Autoregressive`.

        Args:
            f: maps samples ``LongTensor[M, *B, D]`` (one-hot ``[M, *B, D, K]`` if
                ``one_hot``) to ``Tensor[M, *B]``; ``M`` is the estimator's number of
                sample rows. Bool and integer outputs are cast to the logits' dtype.
            logits: ``[*B, D, K]`` unnormalised log-probabilities; ``-inf`` marks
                an impossible category. Or an ``Autoregressive`` distribution, for the
                estimators that support one (SCateR, REINFORCE, RLOO, Exact).
            one_hot: overrides the estimator's ``one_hot`` for this call.
            generator: overrides the estimator's generator for this call.

        Returns:
            ``Tensor[*B]``: the estimate of ``E[f(X)]``, differentiable.
        """
        one_hot = self.one_hot if one_hot is None else one_hot
        generator = self.generator if generator is None else generator
        if isinstance(logits, Autoregressive):
            objective = Objective(f, logits.batch_shape, logits.num_categories, logits.dtype, one_hot)
            return self._estimate_autoregressive(objective, logits, generator)
        logits = check_logits(logits)
        objective = Objective(
            f,
            batch_shape=logits.shape[:-2],
            num_categories=logits.shape[-1],
            dtype=logits.dtype,
            one_hot=one_hot,
        )
        return self._estimate(objective, logits, generator)

    @abc.abstractmethod
    def _estimate(
        self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The estimate for validated ``logits: [*B, D, K]``; returns ``Tensor[*B]``."""

    def _estimate_autoregressive(
        self, objective: Objective, dist: Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The estimate for an autoregressive ``dist``; returns ``Tensor[*B]``. Refused unless overridden."""
        raise ValueError(
            f"logits: {type(self).__name__} expects a Tensor[*B, D, K] of logits, got an Autoregressive "
            "distribution; use SCateR, REINFORCE, RLOO or Exact for those"
        )

    @abc.abstractmethod
    def cost(self, num_variables: int, num_categories: int) -> Cost:
        """Samples drawn and rows of ``f`` evaluated per batch element for ``D``, ``K``
        when every category is possible."""


def scatter_by_category(
    out: torch.Tensor, variables: torch.Tensor, categories: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Add ``values`` into ``out`` at (variable, category), in place: ``out[b, v_m, c_mb] += values_mb``.

    Args:
        out: ``[*B, D, C]`` accumulator.
        variables: ``LongTensor[M]``, the variable of each row.
        categories: ``LongTensor[M, *B]``, the category of each row and batch element.
        values: ``[M, *B]``, added where the indices point.

    Returns:
        ``out``.
    """
    num_columns = out.shape[-1]
    flat_out = out.view(-1, out.shape[-2] * num_columns)
    rows = variables.shape[0]
    index = (variables.view(rows, *([1] * (categories.ndim - 1))) * num_columns + categories).reshape(rows, -1)
    flat_out.scatter_add_(1, index.T, values.reshape(rows, -1).T)
    return out


def catlog_estimate(sample_mean: torch.Tensor, probs: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """The value and gradient of the CatLog-Derivative estimators (IndeCateR, SCateR).

    Args:
        sample_mean: ``[*B]``, the mean of ``f`` over the drawn samples, with autograd
            (its gradient is the pathwise term ``E[grad f]``).
        probs: ``[*L, *B, D, K]``, ``p_d(k)`` (or ``p(k | x_<d)``) with autograd.
        coefficients: ``[*L, *B, D, K]``, ``c_dk``: the mean of ``f`` with ``X_d = k``
            (no autograd); ``L`` are leading sample dimensions to average over.

    Returns:
        ``[*B]`` whose value is the Rao-Blackwellised estimate
        ``mean_L 1/D sum_d sum_k p_d(k) c_dk`` of ``E[f]`` (each ``d`` gives an
        unbiased estimate that sums ``X_d`` out; for ``f >= 0`` it is zero only when
        every ``c_dk`` is, and then so is the score term), and whose gradient is
        ``grad sample_mean + mean_L sum_{d,k} c_dk grad p_d(k)``.
    """
    weighted = (coefficients * probs).reshape(-1, *sample_mean.shape, *probs.shape[-2:])
    value = weighted.detach().sum(-1).mean(-1).mean(0)
    score = weighted.sum((-2, -1)).mean(0)
    return value + (sample_mean - sample_mean.detach()) + (score - score.detach())
