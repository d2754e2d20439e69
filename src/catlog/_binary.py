"""Two categories: IndeCateR's coefficients (``f`` on every sample with one variable flipped) and
``log_softmax`` by ``logsigmoid``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from catlog._objective import Objective


def flip_means(
    objective: Objective,
    samples: torch.Tensor,
    values: torch.Tensor,
    possible: torch.Tensor | None,
    chunk_size: int | None,
) -> torch.Tensor:
    """The IndeCateR coefficients ``c[b, d, k] = 1/N sum_n f(x_{!=d}^(n), k)`` for ``K = 2``.

    With two categories the only perturbed row of sample ``n`` and variable ``d`` is the
    sample with ``x_d`` flipped, ``x ^ e_d``, so

    ``c[b, d, x_d] += f(x)`` and ``c[b, d, 1 - x_d] += f(x ^ e_d)``

    with no offsets, ranks or gathers: the same rows, in the same order (sample, then
    variable), as :func:`catlog._perturbation.category_means`, and the same coefficients
    up to float rounding, with no host synchronisation. A variable with one possible
    category is not flipped (its row holds the sample itself, a valid input whose value
    is discarded), so ``f`` never sees an impossible category.

    Args:
        objective: the wrapped ``f``.
        samples: ``LongTensor[N, G, *B, D]`` with values in ``{0, 1}``; group ``g`` holds
            the samples used for variable ``d = g`` when ``G = D``, or for all variables when ``G = 1``.
        values: ``[N, G, *B]``, ``f`` at ``samples``, not yet checked to be finite: checked
            here with the flipped rows' values, in one reduction.
        possible: ``BoolTensor[*B, D, 2]``, false where the logit is ``-inf``; ``None`` when
            every category is known to be possible (every variable is flipped, nothing masked).
        chunk_size: most perturbed rows per call of ``f``, or ``None`` for one call.

    Returns:
        ``[*B, D, 2]``; zero at impossible categories.
    """
    num_samples, num_variables = samples.shape[0], samples.shape[-1]
    batch_shape = samples.shape[2:-1]
    own = samples.expand(num_samples, num_variables, *samples.shape[2:])  # [N, D, *B, D]: the sample d perturbs
    flip = True if possible is None else possible.all(-1)  # [*B, D]: the variables with two possible categories
    total = num_samples * num_variables
    if chunk_size is None or chunk_size >= total:
        rows = own.clone()
        rows.diagonal(dim1=1, dim2=-1).bitwise_xor_(flip)  # row (n, d): x_d flipped
        flipped = objective(rows.flatten(0, 1), check_finite=False)
    else:  # each chunk's rows built on their own: a cache-sized copy instead of all N * D rows at once
        eye = torch.eye(num_variables, dtype=torch.bool, device=samples.device)
        flips = eye.view(num_variables, *([1] * len(batch_shape)), num_variables) & flip  # [D, *B, D]
        chunks = torch.split(torch.arange(total, device=samples.device), chunk_size)
        flipped = torch.cat(
            [
                objective(
                    own[row // num_variables, row % num_variables] ^ flips[row % num_variables], check_finite=False
                )
                for row in chunks
            ]
        )
    flipped = flipped.reshape(num_samples, num_variables, *batch_shape).movedim(1, -1)  # [N, *B, D]
    values = values.movedim(1, -1)  # [N, *B, G]
    ones = own.diagonal(dim1=1, dim2=-1).bool()  # [N, *B, D]: x_d == 1
    pairs = torch.stack([torch.where(ones, flipped, values), torch.where(ones, values, flipped)], -1)
    objective.require_finite(pairs)  # every flipped row's value and every sample's
    means = pairs.mean(0)
    return means if possible is None else means.masked_fill(~possible, 0.0)


LOGSIGMOID_FROM_ROWS = 2048
"""From this many rows of two logits on, :func:`log_softmax` takes ``logsigmoid``."""


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)`` over the last dimension of ``logits: [..., K]``, with autograd.

    For ``K = 2`` and at least :data:`LOGSIGMOID_FROM_ROWS` rows it is
    ``[logsigmoid(l_0 - l_1), logsigmoid(l_1 - l_0)]``, about a third of ``log_softmax``'s
    time forward and backward on a last dimension of size 2 at 20,000 rows (its kernel is
    not vectorised across rows); ``-inf`` logits give ``-inf`` and ``0`` as there. Below,
    its six ops cost more than they save (at 200 rows 2.4 times ``log_softmax``'s time, at
    4,000 rows 0.68, one thread).
    """
    if logits.shape[-1] != 2 or logits.numel() < 2 * LOGSIGMOID_FROM_ROWS:
        return logits.log_softmax(-1)
    difference = logits[..., 1] - logits[..., 0]
    return F.logsigmoid(torch.stack((-difference, difference), -1))
