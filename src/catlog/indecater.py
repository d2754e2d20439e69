"""IndeCateR: the CatLog-Derivative trick for independent categorical variables (paper eq. 4.1)."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._sampling import sample_categorical
from catlog._validation import check_count
from catlog.estimator import Cost, Estimator, catlog_estimate, scatter_by_category


class IndeCateR(Estimator):
    """The IndeCateR gradient estimator (paper eq. 4.1).

    ``grad E[f(X)] ~= sum_d sum_k grad p_d(k) * 1/N sum_n f(x_{!=d}^(n), k)``

    For every sample ``n``, variable ``d`` and possible category ``k``, ``f`` is
    evaluated on the sample with ``X_d`` set to ``k``. The row with ``k = x_d^(n)``
    is the sample itself, whose value is already known, so ``f`` runs on the
    ``N`` samples (with autograd, for the value and the pathwise term) plus
    ``N * sum_d (K_d - 1)`` perturbed rows (without autograd: they only feed the
    stop-gradient coefficient). Impossible categories (``-inf`` logits) are never
    handed to ``f``. The perturbed rows are built with tensor ops.

    The value returned is the Rao-Blackwellised estimate
    ``1/D sum_d sum_k p_d(k) c_dk`` of ``E[f]``, ``c_dk = 1/N sum_n f(x_{!=d}^(n), k)``
    (see :func:`~catlog.estimator.catlog_estimate`): unbiased, with no more variance
    than the plain sample mean, and, for ``f >= 0``, zero only when the score term is
    zero too, so a loss such as ``-log(value)`` never divides a non-zero gradient by zero.

    Args:
        num_samples: ``N >= 1`` samples (per variable if ``per_variable``).
        per_variable: draw fresh samples ``x^(n_d)`` for every variable ``d`` (the
            paper's IndeCateR with sampling per variable, section 6.4): ``D * N``
            samples, the same number of evaluations.
        chunk_size: evaluate the perturbed rows at most this many rows (each holding
            the whole batch ``*B``) per call of ``f``, to bound peak memory; ``None``
            evaluates them in one call. The result does not depend on it.
        one_hot: see :class:`~catlog.estimator.Estimator`.
        generator: see :class:`~catlog.estimator.Estimator`.
    """

    def __init__(
        self,
        num_samples: int,
        per_variable: bool = False,
        *,
        chunk_size: int | None = None,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator)
        self.num_samples = check_count("num_samples", num_samples, 1)
        self.per_variable = bool(per_variable)
        self.chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, 1)

    def __repr__(self) -> str:
        return (
            f"IndeCateR(num_samples={self.num_samples}, per_variable={self.per_variable}, "
            f"chunk_size={self.chunk_size})"
        )

    def cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples (``D * N`` per variable) and ``N * (1 + D * (K - 1))`` evaluations
        (``N * D * K`` per variable)."""
        groups = num_variables if self.per_variable else 1
        return Cost(
            samples=self.num_samples * groups,
            evaluations=self.num_samples * (groups + num_variables * (num_categories - 1)),
        )

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = logits.softmax(-1)
        num_variables = logits.shape[-2]
        groups = num_variables if self.per_variable else 1
        samples = sample_categorical(logits.detach().log_softmax(-1), (self.num_samples, groups), generator)
        values = objective(samples.flatten(0, 1)).unflatten(0, (self.num_samples, groups))
        with torch.no_grad():
            coefficients = category_means(
                objective, samples, values.detach(), logits.detach() > -math.inf, self.chunk_size
            )
        return catlog_estimate(values.mean((0, 1)), probs, coefficients)


def category_means(
    objective: Objective,
    samples: torch.Tensor,
    values: torch.Tensor,
    possible: torch.Tensor,
    chunk_size: int | None,
) -> torch.Tensor:
    """The IndeCateR coefficients ``c[b, d, k] = 1/N sum_n f(x_{!=d}^(n), k)``.

    Args:
        objective: the wrapped ``f``.
        samples: ``LongTensor[N, G, *B, D]``; group ``g`` holds the samples used for
            variable ``d = g`` when ``G = D`` (sampling per variable), or for all
            variables when ``G = 1``.
        values: ``[N, G, *B]``, ``f`` at ``samples``.
        possible: ``BoolTensor[*B, D, K]``, false where the logit is ``-inf``.
        chunk_size: most sample rows per call of ``f``, or ``None``.

    Returns:
        ``[*B, D, K]``; zero at impossible categories.

    For variable ``d`` with ``K_d`` possible categories (ranked ``0..K_d-1``), the
    perturbation with offset ``j`` moves ``x_d`` from rank ``r`` to rank
    ``(r + j) mod K_d``; offset 0 is the sample itself. Offsets ``1..max_b K_d - 1``
    are evaluated; for batch elements with fewer possible categories the extra
    offsets keep ``x_d`` (a valid input) and their value is discarded.
    """
    num_samples, groups = samples.shape[:2]
    batch_shape, (num_variables, num_categories) = possible.shape[:-2], possible.shape[-2:]
    perturbed_rows = num_samples * num_variables * (num_categories - 1)
    if num_categories > 1 and (chunk_size is None or chunk_size >= perturbed_rows) and bool(possible.all()):
        return _means_all_possible(objective, samples, values, num_categories)
    sums = possible.new_zeros((*batch_shape, num_variables, num_categories + 1), dtype=values.dtype)

    own = samples.diagonal(dim1=1, dim2=-1) if groups > 1 else samples[:, 0]
    own_values = values.movedim(1, -1) if groups > 1 else values[:, 0, ..., None]
    variables = torch.arange(num_variables, device=samples.device)
    scatter_by_category(
        sums,
        variables.repeat(num_samples),
        own.movedim(-1, 1).flatten(0, 1),
        own_values.expand(own.shape).movedim(-1, 1).flatten(0, 1),
    )

    counts = possible.sum(-1)
    ranks = possible.cumsum(-1) - 1
    by_rank = torch.argsort((~possible).to(torch.uint8), dim=-1, stable=True)
    row_variable, row_offset = offset_pairs(counts)
    num_rows = num_samples * row_variable.shape[0]
    step = max(num_rows, 1) if chunk_size is None else chunk_size
    for start in range(0, num_rows, step):
        rows = torch.arange(start, min(start + step, num_rows), device=samples.device)
        n, r = rows // row_variable.shape[0], rows % row_variable.shape[0]
        d, j = row_variable[r], row_offset[r]
        x = samples[n, d if groups > 1 else torch.zeros_like(d)]
        _perturb_and_add(objective, x, d, j, counts, ranks, by_rank, sums)
    return sums[..., :num_categories] / num_samples


def _means_all_possible(
    objective: Objective, samples: torch.Tensor, values: torch.Tensor, num_categories: int
) -> torch.Tensor:
    """:func:`category_means` when all ``K >= 2`` categories are possible, in one call of ``f``.

    Row ``(n, d, j)``, ``j = 1..K-1``, is sample ``n`` (of group ``d`` per variable) with
    ``x_d`` moved to ``(x_d + j) mod K``: the rows of the general path, in its order,
    built by one broadcast ``where`` without the rank bookkeeping. Offset ``j = 0`` is
    the sample itself, whose value is ``values``; category ``k`` is offset ``(k - x_d) mod K``.

    Shapes: ``samples: LongTensor[N, G, *B, D]``, ``values: [N, G, *B]``; returns ``[*B, D, K]``.
    """
    num_samples, num_variables = samples.shape[0], samples.shape[-1]
    batch_shape = samples.shape[2:-1]
    own = samples.expand(num_samples, num_variables, *samples.shape[2:])  # [N, D, *B, D]: perturbed by d
    current = own.diagonal(dim1=1, dim2=-1)  # [N, *B, D]: x_d of the sample d perturbs
    offsets = torch.arange(num_categories, device=samples.device)
    moved = ((current.unsqueeze(-1) + offsets[1:]) % num_categories).movedim((-2, -1), (1, 2))  # [N, D, K-1, *B]
    eye = torch.eye(num_variables, dtype=torch.bool, device=samples.device)
    rows = torch.where(
        eye.view(num_variables, 1, *([1] * len(batch_shape)), num_variables), moved.unsqueeze(-1), own.unsqueeze(2)
    )
    perturbed = objective(rows.flatten(0, 2)).view(num_samples, num_variables, num_categories - 1, *batch_shape)
    by_offset = torch.cat([values.expand(num_samples, num_variables, *batch_shape).unsqueeze(2), perturbed], 2)
    offset_of = ((offsets - current.unsqueeze(-1)) % num_categories).movedim((-2, -1), (1, 2))  # [N, D, K, *B]
    return by_offset.gather(2, offset_of).mean(0).movedim((0, 1), (-2, -1))


def offset_pairs(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The perturbations to evaluate: every (variable ``d``, offset ``1 <= j < max K_d``).

    Args:
        counts: ``LongTensor[..., D]``, the number of possible categories of each variable.

    Returns:
        ``variable, offset: LongTensor[R]``, sorted by variable, then offset.
    """
    num_variables = counts.shape[-1]
    most = counts.reshape(-1, num_variables).amax(0)
    offsets = torch.arange(1, int(most.max()), device=counts.device)
    variable, offset = (offsets < most[:, None]).nonzero(as_tuple=True)
    return variable, offsets[offset]


def perturb(
    x: torch.Tensor, d: torch.Tensor, j: torch.Tensor, count: torch.Tensor, ranks: torch.Tensor, by_rank: torch.Tensor
) -> torch.Tensor:
    """Move ``x[m, ..., d_m]`` by ``j_m`` possible categories (in rank order, cyclically), in place.

    Args:
        x: ``LongTensor[M, *B, D]`` (a copy, modified in place).
        d, j: ``LongTensor[M]``, the variable and offset of each row.
        count: ``LongTensor[M, *B]``, how many categories of ``X_{d_m}`` are possible.
        ranks: ``LongTensor[M, *B, K]``, the rank of each category among the possible ones.
        by_rank: ``LongTensor[M, *B, K]``, the possible categories in rank order.

    Returns:
        ``LongTensor[M, *B]``: the new category, or ``K`` where ``j_m >= count`` (``x`` is
        then left unchanged and the row is to be discarded).
    """
    rows, num_categories = x.shape[0], ranks.shape[-1]
    where = d.view(rows, *([1] * (x.ndim - 1))).expand(*x.shape[:-1], 1)
    current = x.gather(-1, where).squeeze(-1)
    rank = ranks.gather(-1, current.unsqueeze(-1)).squeeze(-1)
    shift = j.view(rows, *([1] * (x.ndim - 2)))
    moved = by_rank.gather(-1, ((rank + shift) % count).unsqueeze(-1)).squeeze(-1)
    valid = shift < count
    x.scatter_(-1, where, torch.where(valid, moved, current).unsqueeze(-1))
    return torch.where(valid, moved, num_categories)


def _perturb_and_add(
    objective: Objective,
    x: torch.Tensor,
    d: torch.Tensor,
    j: torch.Tensor,
    counts: torch.Tensor,
    ranks: torch.Tensor,
    by_rank: torch.Tensor,
    sums: torch.Tensor,
) -> None:
    """Move ``x[m, ..., d_m]`` by ``j_m`` possible categories, evaluate ``f`` and add into ``sums``.

    Shapes: ``x: [M, *B, D]`` (a copy, modified in place), ``d, j: [M]``, ``counts: [*B, D]``,
    ``ranks, by_rank: [*B, D, K]``, ``sums: [*B, D, K + 1]`` (column ``K`` collects
    the discarded rows).
    """
    category = perturb(x, d, j, counts.movedim(-1, 0)[d], ranks.movedim(-2, 0)[d], by_rank.movedim(-2, 0)[d])
    scatter_by_category(sums, d, category, objective(x))
