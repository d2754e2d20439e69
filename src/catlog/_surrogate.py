"""The shared machinery of the CatLog-Derivative estimators: accumulation by category and the surrogate."""

from __future__ import annotations

import math
from typing import Literal

import torch

from catlog._constants import constant, count_up

Pathwise = Literal["samples", "all"]
PATHWISE: tuple[Pathwise, ...] = ("samples", "all")


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
    batch = math.prod(out.shape[:-2])
    flat_out = out.view(batch, out.shape[-2] * num_columns)
    rows = variables.shape[0]
    index = (variables.view(rows, *([1] * (categories.ndim - 1))) * num_columns + categories).reshape(rows, batch)
    flat_out.scatter_add_(1, index.T, values.reshape(rows, batch).T)
    return out


CONTRACT_FROM_ELEMENTS = 2**22
"""From this many sample entries ``N * B * D`` on, :func:`sum_by_category` contracts binary samples by
``einsum``: one thread, a product and a sum took 0.4-0.6 of its time up to 1.6M entries, 1.3 times
it at 16M (the DVAE's ``[800, 100, 200]``)."""

ONE_HOT_BELOW_ENTRIES = 2**15
"""Below this many one-hot entries ``N * B * D * K``, :func:`sum_by_category` sums a one-hot product
for ``K > 2``: one thread, 0.3 of :func:`scatter_by_category`'s time at ``2 * 200 * 5`` entries, the
same at ``2 * 16 * 200 * 5``, 3.5 times it at ``20 * 100 * 200 * 5``."""


def sum_by_category(samples: torch.Tensor, weights: torch.Tensor, num_categories: int) -> torch.Tensor:
    """``w[b, d, k] = sum_n weights[n, b] 1[samples[n, b, d] = k]``, the weight each category collects.

    For ``K = 2`` a contraction: ``w[b, d, 1] = sum_n weights[n, b] x[n, b, d]`` and
    ``w[b, d, 0] = sum_n weights[n, b] - w[b, d, 1]``, by a product and a sum up to
    :data:`CONTRACT_FROM_ELEMENTS` samples' entries (two ops, where ``einsum``'s Python
    costs more than they do), by ``einsum`` (matrix products) above. For larger ``K`` the
    sum over ``n`` of ``weights`` times the one-hot samples below
    :data:`ONE_HOT_BELOW_ENTRIES`, :func:`scatter_by_category` above.

    Args:
        samples: ``LongTensor[N, *B, D]``.
        weights: ``[N, *B]``.
        num_categories: ``K``.

    Returns:
        ``[*B, D, K]`` in the dtype of ``weights``.
    """
    if num_categories == 2:
        if samples.numel() < CONTRACT_FROM_ELEMENTS:
            ones = (weights.unsqueeze(-1) * samples).sum(0)
        else:
            ones = torch.einsum("n...d,n...->...d", samples.to(weights.dtype), weights)
        return torch.stack([weights.sum(0).unsqueeze(-1) - ones, ones], -1)
    if samples.numel() * num_categories < ONE_HOT_BELOW_ENTRIES:
        one_hot = samples.unsqueeze(-1) == constant(count_up, num_categories, samples.device)
        return (one_hot * weights.view(*weights.shape, 1, 1)).sum(0)
    num_samples, num_variables = samples.shape[0], samples.shape[-1]
    return scatter_by_category(
        weights.new_zeros((*samples.shape[1:], num_categories)),
        torch.arange(num_variables, device=samples.device).repeat(num_samples),
        samples.movedim(-1, 1).flatten(0, 1),
        weights.unsqueeze(-1).expand(samples.shape).movedim(-1, 1).flatten(0, 1),
    )


def catlog_estimate(
    sample_values: torch.Tensor, probs: torch.Tensor, coefficients: torch.Tensor, pathwise: Pathwise
) -> torch.Tensor:
    """The value and gradient of the CatLog-Derivative estimators (IndeCateR, SCateR).

    Args:
        sample_values: ``[S, *B]``, ``f`` at the ``S`` drawn samples, with autograd.
        probs: ``[*L, *B, D, K]``, ``p_d(k)`` (or ``p(k | x_<d)``) with autograd.
        coefficients: ``[*L, *B, D, K]``, ``c_dk``: the mean of ``f`` with ``X_d = k``;
            ``L`` are leading sample dimensions to average over. With autograd through
            ``f`` when ``pathwise`` is ``"all"``; its gradient is not used otherwise.
        pathwise: where the pathwise term (the gradient reaching ``f``'s parameters)
            comes from: ``"samples"``, the gradient of the sample mean ``1/S sum_s f(x^(s))``;
            ``"all"``, that of the Rao-Blackwellised value below with ``p_d(k)`` held constant,
            ``mean_L 1/D sum_{d,k} p_d(k) grad c_dk``.

    Returns:
        ``[*B]`` whose value is the Rao-Blackwellised estimate
        ``mean_L 1/D sum_d sum_k p_d(k) c_dk`` of ``E[f]`` (each ``d`` gives an
        unbiased estimate that sums ``X_d`` out; for ``f >= 0`` it is zero only when
        every ``c_dk`` is, and then so is the score term), and whose gradient is
        the pathwise term plus the score term ``mean_L sum_{d,k} c_dk grad p_d(k)``.
    """
    num_variables, batch_dims = probs.shape[-2], sample_values.ndim - 1
    constant = coefficients.detach() if coefficients.requires_grad else coefficients
    score = _summed(constant * probs, batch_dims)  # D times the value, with autograd
    # only the gradient of ``gradient`` is used: a pathwise term without autograd is left out
    if pathwise == "all":
        gradient = score + _summed(coefficients * probs.detach(), batch_dims) / num_variables
    elif sample_values.requires_grad:
        gradient = score + sample_values.mean(0)
    else:
        gradient = score
    value = score.detach()
    return torch.add(gradient - gradient.detach(), value, alpha=1 / num_variables)


def _summed(weighted: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """``mean_L sum_{d,k} w_ldk`` of ``weighted: [*L, *B, D, K]`` with ``len(B) = batch_dims``; returns ``[*B]``."""
    leading = weighted.ndim - batch_dims - 2
    total = weighted.sum((*range(leading), -2, -1))
    return total / math.prod(weighted.shape[:leading]) if leading else total
