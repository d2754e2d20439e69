"""The :class:`Problem` type that every problem module builds, and the logits problems' builder."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

import catlog
from catlog.experiments import estimators

Objective = Callable[[torch.Tensor], torch.Tensor]
Loss = Callable[[catlog.Estimator, torch.Generator | None], torch.Tensor]
Batched = Callable[[catlog.Estimator, int, torch.Generator | None], torch.Tensor]
ELEMENT_BUDGET = 2_000_000
"""Rows x batch x ``D`` x ``K`` per estimator call when a problem batches its repeated estimates."""
FIT_ESTIMATES = 10
"""Estimates per fitting step of :meth:`Problem.fit` (one call of ``f`` on a batched problem)."""


@dataclass(frozen=True)
class Problem:
    """One problem: an objective, the parameters the estimators' gradients reach, and its sizes.

    Attributes:
        name: short name (``fig1``, ``binary``, ...).
        title: one line saying what it is.
        num_variables, num_categories: ``D``, ``K`` (for ``Estimator.cost``).
        loss: ``loss(estimator, generator) -> scalar``: one estimate (the model's forward pass,
            if any, then ``estimator(f, ...)``) reduced to the scalar whose gradient w.r.t.
            :attr:`parameters` is the gradient estimate.
        parameters: the tensors the gradient is taken with respect to.
        f: the objective the estimators see, ``[M, *B, D] -> [M, *B]`` (benchmarks time it alone).
        batch_shape: ``B``.
        relaxable: ``f`` accepts relaxed float values, so relaxed estimators apply.
        autoregressive: the distribution is a :class:`catlog.Autoregressive` (SCateR, not IndeCateR).
        exact: ``[P]`` exact gradient (float64), or ``None`` where it is not known.
        one_hot: :attr:`f` takes (float) one-hot samples ``[M, *B, D, K]``; estimators are built
            with ``one_hot=True``.
        batched: ``(estimator, r, generator) -> [r, P]``: ``r`` independent estimates from one
            estimator call, where the problem can batch them; ``None``: one :attr:`loss` per estimate.
    """

    name: str
    title: str
    num_variables: int
    num_categories: int
    loss: Loss
    parameters: tuple[torch.Tensor, ...]
    f: Objective
    batch_shape: tuple[int, ...] = ()
    relaxable: bool = False
    autoregressive: bool = False
    exact: torch.Tensor | None = None
    batched: Batched | None = None
    one_hot: bool = False

    def gradients(
        self,
        estimator: catlog.Estimator,
        repeats: int,
        generator: torch.Generator | None = None,
        block: int | None = None,
    ) -> torch.Tensor:
        """``repeats`` independent gradient estimates ``[R, P]`` at the problem's fixed parameters.

        Batched problems compute ``block`` estimates per call (``None``: as many as
        :data:`ELEMENT_BUDGET` allows, from the estimator's cost); the others one :attr:`loss`
        and backward pass per estimate. The statistics of these rows are :mod:`catlog.measure`'s.

        Raises:
            ValueError: for ``repeats < 1``.
        """
        if repeats < 1:
            raise ValueError(f"repeats: expected an integer >= 1, got {repeats}")
        if self.batched is None:
            rows = [self.gradient(estimator, generator) for _ in range(repeats)]
            return torch.stack(rows)
        if block is None:
            cost = estimator.cost(self.num_variables, self.num_categories)
            width = max(cost.samples, cost.evaluations) * math.prod(self.batch_shape) * self.num_variables
            block = max(1, min(repeats, ELEMENT_BUDGET // (width * self.num_categories)))
        parts = [self.batched(estimator, min(block, repeats - start), generator) for start in range(0, repeats, block)]
        return torch.cat(parts)

    def gradient(self, estimator: catlog.Estimator, generator: torch.Generator | None = None) -> torch.Tensor:
        """One gradient estimate ``[P]``: :attr:`loss` differentiated w.r.t. :attr:`parameters`, flattened."""
        grads = torch.autograd.grad(self.loss(estimator, generator), self.parameters)
        return torch.cat([grad.flatten() for grad in grads])

    def budget(self, temperature: float = 1.0) -> estimators.Budget:
        """The experiments' :class:`~catlog.experiments.estimators.Budget` on this problem's ``D``, ``K``, for
        families built at a given size (``Family.build``; its ``samples`` is then unused)."""
        return estimators.Budget(
            1,
            self.num_variables,
            self.num_categories,
            temperature,
            autoregressive=self.autoregressive,
            one_hot=self.one_hot,
        )

    def fit(
        self,
        estimator: catlog.Estimator,
        steps: int,
        generator: torch.Generator | None = None,
        block: int = FIT_ESTIMATES,
    ) -> None:
        """Fit a learned control variate before measuring it, at the problem's fixed parameters.

        REBAR and RELAX: ``steps`` Adam steps (lr 1e-2) on their own variance gradient, each
        from :data:`FIT_ESTIMATES` estimates in one call (one estimate on an unbatched
        problem). IndeCateR with a carried ``Fitted`` fit (``memory > 0``): ``steps`` calls of
        ``block`` estimates that fill it; measure it then with the same ``block``, so that the
        batch shape, and with it the fit, carries on. Others: nothing.
        """
        control_variate = getattr(estimator, "control_variate", None)
        if isinstance(control_variate, catlog.Fitted):
            for _ in range(steps if control_variate.memory > 0 else 0):
                self.gradients(estimator, block, generator, block)
        elif isinstance(estimator, (catlog.REBAR, catlog.RELAX)):
            optimiser = torch.optim.Adam(estimator.parameters(), lr=1e-2)
            for _ in range(steps):
                optimiser.zero_grad()
                self.gradients(estimator, FIT_ESTIMATES if self.batched else 1, generator, FIT_ESTIMATES)
                optimiser.step()


def logits_problem(
    name: str,
    title: str,
    logits: torch.Tensor,
    f: Objective,
    *,
    relaxable: bool,
    exact: torch.Tensor | None = None,
    one_hot: bool = False,
) -> Problem:
    """A problem whose parameters are the logits ``[*B, D, K]`` themselves; ``loss`` = the sum of the estimates.

    Repeated estimates are batched (:func:`catlog.measure.repeated_gradients` with a leading
    repeat dimension), so ``f`` must broadcast over leading dimensions.

    Args:
        exact: the exact gradient ``[P]``, or ``None``.
        one_hot: ``f`` takes one-hot samples (see :attr:`Problem.one_hot`).
    """
    leaf = logits.detach().clone().requires_grad_()

    def loss(estimator: catlog.Estimator, generator: torch.Generator | None) -> torch.Tensor:
        return estimator(f, leaf, generator=generator).sum()

    def batched(estimator: catlog.Estimator, count: int, generator: torch.Generator | None) -> torch.Tensor:
        return catlog.repeated_gradients(estimator, f, leaf, count, per_call=count, generator=generator)

    *batch, num_variables, num_categories = leaf.shape
    return Problem(
        name,
        title,
        num_variables,
        num_categories,
        loss,
        (leaf,),
        f,
        tuple(batch),
        relaxable,
        exact=exact,
        batched=batched,
        one_hot=one_hot,
    )


def variance_per_entry(gradients: torch.Tensor) -> float:
    """:func:`catlog.measure.gradient_variance` of ``gradients: [R, P]`` divided by ``P``.

    The scale of the training logs' ``variance`` (``catlog optimise``, ``catlog dvae``,
    ``catlog dvae-variance``, ``catlog addition-variance``), kept so that their new runs
    compare with the old ones and with docs/results.md.
    """
    return catlog.gradient_variance(gradients) / gradients.shape[1]
