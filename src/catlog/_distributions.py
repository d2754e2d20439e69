"""What the estimators accept as the distribution, and how it becomes logits ``[*B, D, K]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Categorical, Independent, OneHotCategorical

from catlog._validation import check_logits
from catlog.autoregressive import Autoregressive

if TYPE_CHECKING:  # Independent is generic for type checkers, not at run time in every torch >= 2.1
    DistributionLike = torch.Tensor | Independent[Any] | Categorical | OneHotCategorical | Autoregressive
    """Logits ``[*B, D, K]``, a factorised categorical distribution over ``D`` variables, or an
    :class:`~catlog.autoregressive.Autoregressive`."""

EXPECTED = (
    "logits Tensor[*B, D, K], Independent(Categorical(logits=L), 1), Independent(OneHotCategorical(logits=L), 1), "
    "a Categorical or OneHotCategorical whose last batch dimension is D, or an Autoregressive"
)


def as_logits(dist: object) -> torch.Tensor:
    """The logits ``[*B, D, K]`` of a factorised categorical ``dist``, their metadata checked
    (:func:`~catlog._validation.check_logits`).

    - a tensor is taken as the logits themselves;
    - ``Independent(Categorical(logits=L), 1)`` or ``Independent(OneHotCategorical(logits=L), 1)``
      (batch ``B``, event ``[D]``) gives ``L - logsumexp(L)`` (torch normalises the
      logits; the probabilities, samples and gradients are those of ``L``);
    - a plain ``Categorical`` or ``OneHotCategorical`` of batch shape ``[*B, D]``: its
      last batch dimension is taken as the ``D`` variables.

    A distribution built from ``probs`` gives torch's ``logits``, in which a zero
    probability is clamped to a tiny positive one: mark impossible categories with
    ``-inf`` logits instead.

    Args:
        dist: any of the above (an ``Autoregressive`` is handled by the caller).

    Returns:
        ``[*B, D, K]``, differentiable in the distribution's parameters.
    """
    if isinstance(dist, torch.Tensor):
        return check_logits(dist, "dist")
    if isinstance(dist, Independent):
        base = dist.base_dist
        if not isinstance(base, (Categorical, OneHotCategorical)) or dist.reinterpreted_batch_ndims != 1:
            raise ValueError(
                f"dist: expected Independent(Categorical(...), 1) or Independent(OneHotCategorical(...), 1) "
                f"(event [D]), got Independent({type(base).__name__}, {dist.reinterpreted_batch_ndims})"
            )
        return check_logits(base.logits, "dist")
    if isinstance(dist, (Categorical, OneHotCategorical)):
        if len(dist.batch_shape) == 0:
            raise ValueError(
                f"dist: a plain {type(dist).__name__} is read with its last batch dimension as the D variables "
                "(batch_shape [*B, D]); expected at least one batch dimension, got batch_shape (); "
                f"wrap it as {type(dist).__name__}(logits=L.unsqueeze(-2)) for one variable"
            )
        return check_logits(dist.logits, "dist")
    raise ValueError(f"dist: expected {EXPECTED}, got {type(dist).__name__}")


def resolve_alias(dist: object, logits: object) -> object:
    """The distribution argument, given as ``dist`` or by its old keyword ``logits``."""
    if logits is None:
        if dist is None:
            raise ValueError(f"dist: expected {EXPECTED}, got None")
        return dist
    if dist is not None:
        raise ValueError("dist: given twice, as dist and as its old keyword logits; expected one of them")
    return logits
