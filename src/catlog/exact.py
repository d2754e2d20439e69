"""Exact expectation and gradient by enumerating every joint state."""

from __future__ import annotations

import math

import torch

from catlog._objective import Objective
from catlog._validation import Checked, check_states
from catlog.autoregressive import Autoregressive, _sequence_log_prob
from catlog.estimator import Cost, Estimator


def _enumerate_states(num_variables: int, num_categories: int, device: torch.device | None = None) -> torch.Tensor:
    """Every joint state in lexicographic order: ``LongTensor[K**D, D]``."""
    powers = num_categories ** torch.arange(num_variables - 1, -1, -1, device=device)
    return torch.arange(num_categories**num_variables, device=device)[:, None] // powers % num_categories


class Exact(Estimator):
    r"""The exact expectation and gradient, by enumerating all $K^D$ joint states.

    $$
    \mathbb{E}[f(X)] = \sum_{x \in \{0..K-1\}^D} p(x)\, f(x),
    $$

    differentiated by autograd. States with an impossible category (``-inf`` logit)
    have $p(x) = 0$, and ``f`` is never handed an impossible value (it sees such a
    variable at its most likely category). On an :class:`~catlog.Autoregressive` the
    $K^D$ sequences are scored by ``D`` calls of ``conditional``, all at once. For
    small problems and tests; :func:`catlog.exact_gradient` uses it.

    Shapes:
        - dist: logits ``[*B, D, K]``, a factorised categorical distribution or an ``Autoregressive``.
        - f: ``LongTensor[K^D, *B, D] -> Tensor[K^D, *B]``.
        - returns: ``Tensor[*B]``.

    Cost:
        No samples and $K^D$ evaluations of ``f`` per batch element.

    Args:
        max_states: refuse problems with more than this many states.
        one_hot: hand ``f`` float one-hot states instead of category indices.
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows per call (each holding
            the whole batch ``*B``), to bound peak memory; ``None``: all in one call. The
            result does not depend on it.

    Raises:
        ValueError: where $K^D$ exceeds ``max_states``, and for bad input in the call.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 2)
        >>> catlog.Exact()(lambda x: x.sum(-1).float(), logits)
        tensor(1.5000)
    """

    max_states = Checked(check_states)

    def __init__(
        self,
        max_states: int = 2**20,
        *,
        one_hot: bool = False,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, validate_args=validate_args, chunk_size=chunk_size)
        self.max_states = max_states

    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """No samples and ``K**D`` evaluations."""
        return Cost(samples=0, evaluations=num_categories**num_variables)

    def _check_size(self, num_variables: int, num_categories: int) -> None:
        """Raise ``ValueError`` if ``K**D`` exceeds ``max_states``."""
        count = num_categories**num_variables
        if count > self.max_states:
            raise ValueError(
                f"dist: Exact enumerates K**D = {num_categories}**{num_variables} = {count} states, "
                f"expected at most max_states={self.max_states}; use a sampling estimator or raise max_states"
            )

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        num_variables, num_categories = logits.shape[-2:]
        self._check_size(num_variables, num_categories)
        states = _enumerate_states(num_variables, num_categories, logits.device)
        variables = torch.arange(num_variables, device=logits.device)
        log_probs = logits.log_softmax(-1)[..., variables, states].sum(-1).movedim(-1, 0)
        possible = (logits.detach() > -math.inf)[..., variables, states].movedim(-2, 0)
        fallback = logits.detach().argmax(-1)
        values = objective(
            torch.where(possible, states.view(states.shape[0], *([1] * (logits.ndim - 2)), -1), fallback)
        )
        return (log_probs.exp() * values).sum(0)

    def _estimate_autoregressive(
        self, objective: Objective, dist: Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        self._check_size(dist.num_variables, dist.num_categories)
        states = _enumerate_states(dist.num_variables, dist.num_categories, dist.device)
        states = states.view(states.shape[0], *([1] * len(dist.batch_shape)), -1).expand(
            states.shape[0], *dist.batch_shape, -1
        )
        repaired = states.clone()

        def keep_if_possible(logits: torch.Tensor, d: int) -> torch.Tensor:
            wanted = states[..., d]
            possible = logits.detach().gather(-1, wanted.unsqueeze(-1)).squeeze(-1) > -math.inf
            return torch.where(possible, wanted, logits.detach().argmax(-1))

        logits = dist._rollout_logits(repaired, keep_if_possible)
        return (_sequence_log_prob(logits, states).exp() * objective(repaired)).sum(0)
