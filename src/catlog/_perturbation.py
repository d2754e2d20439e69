"""IndeCateR's coefficients: ``f`` on every sample with one variable moved to each other category."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

from catlog._constants import constant, count_up, identity
from catlog._objective import Objective
from catlog._surrogate import scatter_by_category


def category_means(
    objective: Objective,
    samples: torch.Tensor,
    values: torch.Tensor,
    possible: torch.Tensor | None,
    num_categories: int,
    chunk_size: int | None,
    skip_impossible: bool,
) -> torch.Tensor:
    """The IndeCateR coefficients ``c[b, d, k] = 1/N sum_n f(x_{!=d}^(n), k)``.

    Args:
        objective: the wrapped ``f``.
        samples: ``LongTensor[N, G, *B, D]``; group ``g`` holds the samples used for
            variable ``d = g`` when ``G = D`` (sampling per variable), or for all
            variables when ``G = 1``.
        values: ``[N, G, *B]``, ``f`` at ``samples``, not yet checked to be finite (checked here).
        possible: ``BoolTensor[*B, D, K]``, false where the logit is ``-inf``; ``None``
            when every category is known to be possible.
        num_categories: ``K``.
        chunk_size: most sample rows per call of ``f``, or ``None``. With autograd on,
            chunks are recomputed in the backward pass (see :func:`evaluate_rows`).
        skip_impossible: look whether some category is impossible (a host
            synchronisation) and, if so, evaluate no row that only serves one. Without
            it, and without chunks, every offset ``1..K-1`` is evaluated in one call
            of ``f`` with no host synchronisation (see :func:`sample_rows`).

    Returns:
        ``[*B, D, K]``; zero at impossible categories. With autograd on (``pathwise="all"``)
        its graph reaches ``f``'s parameters through ``values`` and every perturbed row.

    For variable ``d`` with ``K_d`` possible categories (ranked ``0..K_d-1``), the
    perturbation with offset ``j`` moves ``x_d`` from rank ``r`` to rank
    ``(r + j) mod K_d``; offset 0 is the sample itself. Offsets ``1..max_b K_d - 1``
    are evaluated; for batch elements with fewer possible categories the extra
    offsets keep ``x_d`` (a valid input) and their value is discarded.
    """
    num_samples, groups = samples.shape[:2]
    batch_shape, num_variables = samples.shape[2:-1], samples.shape[-1]
    perturbed_rows = num_samples * num_variables * (num_categories - 1)
    if chunk_size is None or chunk_size >= perturbed_rows:
        if possible is None or not skip_impossible:
            return sample_mean(sample_rows(objective, samples, values, num_categories, possible))
        if bool(possible.all()):
            return sample_mean(sample_rows(objective, samples, values, num_categories, None))
    objective.require_finite(values)
    if possible is None:
        possible = torch.ones((*batch_shape, num_variables, num_categories), dtype=torch.bool, device=samples.device)
    sums = values.new_zeros((*batch_shape, num_variables, num_categories + 1))

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
    row_variable, row_offset = offset_pairs(counts, num_categories, skip_impossible)
    num_rows = num_samples * row_variable.shape[0]
    step = max(num_rows, 1) if chunk_size is None else chunk_size

    def build(n: torch.Tensor, d: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = samples[n, d if groups > 1 else torch.zeros_like(d)]
        return x, perturb(x, d, j, counts.movedim(-1, 0)[d], ranks.movedim(-2, 0)[d], by_rank.movedim(-2, 0)[d])

    for start in range(0, num_rows, step):
        rows = torch.arange(start, min(start + step, num_rows), device=samples.device)
        n, r = rows // row_variable.shape[0], rows % row_variable.shape[0]
        d, j = row_variable[r], row_offset[r]
        category, perturbed = evaluate_rows(objective, build, n, d, j, recompute=chunk_size is not None)
        scatter_by_category(sums, d, category, perturbed)
    return sums[..., :num_categories] / num_samples


def sample_rows(
    objective: Objective,
    samples: torch.Tensor,
    values: torch.Tensor,
    num_categories: int,
    possible: torch.Tensor | None,
) -> torch.Tensor:
    """Every sample's rows ``f(x_{!=d}^(n), k)`` (zero at impossible ``k``), in at most one call of ``f``.

    Offset ``j`` of sample ``n`` and variable ``d`` is category ``k = (x_d + j) mod K``:
    for each ``(n, d)`` the offsets ``0..K-1`` are a permutation of the categories. Row
    ``(n, d, j)``, ``j >= 1``, is sample ``n`` (of group ``d`` per variable) with ``x_d``
    moved to that ``k``, or kept where ``k`` is impossible (a valid input whose value is
    discarded): the rows of :func:`category_means`' general path, in its order, built by
    one broadcast ``where`` without the rank bookkeeping and without host
    synchronisation. Offset ``0`` is the sample itself, whose value is ``values``; one
    ``scatter`` along the permutation puts each offset's value at its category. The
    values of ``f``, the samples' (not yet checked) and the rows', are checked to be
    finite together, in one reduction (:meth:`~catlog.Objective.require_finite`).

    Shapes: ``samples: LongTensor[N, G, *B, D]``, ``values: [N, G, *B]``,
    ``possible: BoolTensor[*B, D, K]``, or ``None`` when every category is known to be
    possible (the masking is then skipped); returns ``[N, *B, D, K]``.
    """
    num_samples, num_variables = samples.shape[0], samples.shape[-1]
    batch_shape = samples.shape[2:-1]
    own = samples.expand(num_samples, num_variables, *samples.shape[2:])  # [N, D, *B, D]: perturbed by d
    current = own.diagonal(dim1=1, dim2=-1).unsqueeze(-1)  # [N, *B, D, 1]: x_d of the sample d perturbs
    categories = (current + constant(count_up, num_categories, samples.device)) % num_categories  # [N, *B, D, K]
    by_offset = values.movedim(1, -1).expand(current.shape[:-1]).unsqueeze(-1)  # [N, *B, D, 1]
    if num_categories > 1:
        moved = categories[..., 1:]
        if possible is not None:
            moved = torch.where(possible.expand(categories.shape).gather(-1, moved), moved, current)
        eye = constant(identity, num_variables, samples.device)
        rows = torch.where(
            eye.view(num_variables, 1, *([1] * len(batch_shape)), num_variables),
            moved.movedim((-2, -1), (1, 2)).unsqueeze(-1),
            own.unsqueeze(2),
        )  # [N, D, K-1, *B, D]
        perturbed = objective(rows.flatten(0, 2), check_finite=False).reshape(
            num_samples, num_variables, num_categories - 1, *batch_shape
        )
        by_offset = torch.cat([by_offset, perturbed.movedim((1, 2), (-2, -1))], -1)
    objective.require_finite(by_offset)
    rows = by_offset.scatter(-1, categories, by_offset)
    return rows if possible is None else rows.masked_fill(~possible, 0.0)


def sample_mean(per_sample: torch.Tensor) -> torch.Tensor:
    """The mean over the leading sample dimension of ``per_sample: [N, ...]``; for ``N = 1``
    the sample itself (a view, one op fewer). Returns ``[...]``."""
    return per_sample[0] if per_sample.shape[0] == 1 else per_sample.mean(0)


def offset_pairs(counts: torch.Tensor, num_categories: int, skip_impossible: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The perturbations to evaluate: every (variable ``d``, offset ``1 <= j < max_b K_d``).

    Args:
        counts: ``LongTensor[..., D]``, the number of possible categories of each variable.
        num_categories: ``K``.
        skip_impossible: find ``max_b K_d`` (a host synchronisation); without it, every offset
            ``1 <= j < K`` of every variable, a number of rows known without looking at the data.

    Returns:
        ``variable, offset: LongTensor[R]``, sorted by variable, then offset.
    """
    num_variables, device = counts.shape[-1], counts.device
    if not skip_impossible:
        offsets = torch.arange(1, num_categories, device=device)
        return torch.arange(num_variables, device=device).repeat_interleave(num_categories - 1), offsets.repeat(
            num_variables
        )
    if counts.numel() == 0:
        return counts.new_zeros(0), counts.new_zeros(0)
    most = counts.reshape(-1, num_variables).amax(0)
    offsets = torch.arange(1, int(most.max()), device=device)
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


def evaluate_rows(
    objective: Objective,
    build: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    *indices: torch.Tensor,
    recompute: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(categories, f(rows))`` for ``rows, categories = build(*indices)``, the rows built without autograd.

    ``f`` runs with autograd when it is on (``pathwise="all"``). With ``recompute`` its
    graph is then not kept: ``torch.utils.checkpoint`` keeps ``indices`` and, in the
    backward pass, builds the rows and runs ``f`` again, one call at a time, so that
    chunked evaluations keep their peak memory at one chunk's graph (for the price of
    a second forward pass over the rows). ``build`` must be a function of ``indices``
    and of tensors that stay unchanged until the backward pass.

    Shapes: ``rows: [M, *B, D]`` (``f``'s input), ``categories: [M, *B]``; returns
    ``categories`` and ``[M, *B]``.
    """

    def run(*chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            rows, categories = build(*chunk)
        return categories, objective(rows)

    if recompute and torch.is_grad_enabled():
        categories, values = checkpoint(run, *indices, use_reentrant=False)
        return categories, values
    return run(*indices)
