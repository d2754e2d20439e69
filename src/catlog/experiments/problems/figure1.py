"""Figure 1's problem (paper section 6.1): ``D`` independent variables of ``K`` categories.

Logits ``theta ~ N(0, 1)`` of shape ``[D, K]`` and a target ``b`` drawn once from
``p_theta(X)`` itself (the authors' ``joint.call(1)``). Two objectives:

- ``separable`` (the paper's eq. 6.1): ``f(x) = sum_d |x_d - b_d|``;
- ``nonseparable``: ``f(x) = (sum_d |x_d - b_d|)^2 / D``, whose terms interact,
  so that IndeCateR is no longer exact with one sample.

The gradient is taken w.r.t. the logits; the exact one enumerates the ``K^D`` states in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import catlog
from catlog.experiments.problems.problem import Problem, logits_problem

OBJECTIVES: tuple[str, ...] = ("separable", "nonseparable")


@dataclass(frozen=True)
class Distance:
    """Figure 1's ``f`` for the target ``b: [D]``.

    Calling it evaluates ``f`` on samples ``x: [M, *B, D]`` (category indices, or the relaxed
    float values Gumbel-Softmax hands over) and returns ``[M, *B]``: ``sum_d |x_d - b_d|``
    (separable) or ``(sum_d |x_d - b_d|)^2 / D`` (nonseparable).
    """

    target: torch.Tensor
    objective: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        distance = (x.to(self.target.dtype) - self.target).abs().sum(-1)
        if self.objective == "separable":
            return distance
        return distance.square() / self.target.shape[-1]


def draw(num_variables: int, num_categories: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``theta ~ N(0, 1)`` of shape ``[D, K]``, then ``b ~ p_theta(X)`` (one sample), from ``seed``;
    both float64 on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_variables, num_categories, generator=generator, dtype=torch.float64)
    target = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
    return logits, target.double()


def problem(
    num_variables: int,
    num_categories: int,
    objective: str,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    name: str = "fig1",
    title: str | None = None,
    exact: bool = True,
) -> Problem:
    """Figure 1's problem with ``objective`` (one of :data:`OBJECTIVES`) on :func:`draw`'s logits and target;
    with ``exact``, its exact gradient by enumerating the ``K^D`` states.

    Raises:
        ValueError: for an unknown ``objective``.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    logits, target = draw(num_variables, num_categories, seed)
    gradient = catlog.exact_gradient(Distance(target, objective), logits).to(device) if exact else None
    f = Distance(target.to(device, dtype), objective)
    title = title or f"{objective} f, D = {num_variables}, K = {num_categories}"
    return logits_problem(name, title, logits.to(device, dtype), f, relaxable=True, exact=gradient)
