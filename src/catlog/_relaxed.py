"""What the relaxed estimators hand ``f``: soft samples, or hard ones with a soft backward pass."""

from __future__ import annotations

import torch

from catlog._objective import Objective
from catlog._validation import check_positive


def relaxed_estimate(objective: Objective, soft: torch.Tensor, hard: torch.Tensor | None) -> torch.Tensor:
    """The mean over rows of ``f`` on relaxed samples; returns ``Tensor[*B]``.

    Without ``hard``, ``f`` receives ``soft`` itself. With ``hard`` (straight-through),
    it receives the hard one-hot ``y = onehot(hard)`` forward, exactly, and ``soft``'s
    gradient backward: ``y + soft - stopgrad(soft)``. Unless ``objective.one_hot``,
    ``f`` receives the relaxed category value ``sum_k k * y_k`` instead of ``y``.

    Args:
        objective: the wrapped ``f``.
        soft: ``[K, M, *B, D]``, category first: the relaxed one-hot vectors, with autograd.
        hard: ``LongTensor[M, *B, D]``, the categories of the forward values, or ``None``.
    """
    categories = torch.arange(soft.shape[0], dtype=soft.dtype, device=soft.device).view(-1, *([1] * (soft.ndim - 1)))
    if objective.one_hot:
        relaxed = soft if hard is None else (categories == hard).to(soft.dtype) + (soft - soft.detach())
        return objective.relaxed(relaxed.movedim(0, -1)).mean(0)
    values = (soft * categories).sum(0)
    if hard is not None:
        values = hard.to(soft.dtype) + (values - values.detach())
    return objective.relaxed(values).mean(0)


class Temperature:
    """The ``temperature`` attribute of a relaxed estimator: a finite number ``> 0``, checked
    on every assignment, so that annealing (``est.temperature *= 0.9``) is checked too."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> float:
        if instance is None:  # looked up on the class
            return self  # type: ignore[return-value]
        return instance.__dict__[self.name]

    def __set__(self, instance: object, value: float) -> None:
        instance.__dict__[self.name] = check_positive(self.name, value)
