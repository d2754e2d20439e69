"""The shape every estimator shares: ``est(f, dist) -> Tensor[*B]``."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch

from catlog._distributions import as_logits, resolve_alias
from catlog._objective import Objective
from catlog._validation import (
    Checked,
    check_category_logits,
    check_chunk_size,
    check_count,
    check_flag,
    check_generator,
    check_generator_device,
)
from catlog.autoregressive import Autoregressive

if TYPE_CHECKING:
    from catlog._distributions import DistributionLike


class Cost(NamedTuple):
    """What one estimate costs per batch element, as :meth:`Estimator.cost` gives it.

    Attributes:
        samples: how many joint samples ``x ~ p`` are drawn.
        evaluations: how many rows ``f`` is evaluated on.

    Examples:
        >>> import catlog
        >>> catlog.IndeCateR(2).cost(num_variables=3, num_categories=5)   # N (1 + D (K - 1))
        Cost(samples=2, evaluations=26)
    """

    samples: int
    evaluations: int


class Estimator(abc.ABC):
    """A gradient estimator for ``E_{X ~ p}[f(X)]``, ``p`` a distribution over ``D`` categorical variables.

    Calling it returns ``value: Tensor[*B]``, a Monte-Carlo (or exact) estimate of
    ``E[f(X)]`` whose gradient is the estimator's: the logits receive the estimator's
    score or relaxation term, and parameters that ``f`` uses receive the pathwise
    term ``E[grad f]``.

    Validation works as in ``torch.distributions``: ``validate_args=None`` follows
    the class-wide default (:meth:`set_default_validate_args`, initially ``True``).
    With validation on, an estimate checks the values of the logits and of ``f``'s
    output (NaN, ``+inf``, a variable with no possible category) and that ``f`` left
    its input unchanged; these checks synchronise with the device. With it off, only
    shapes, dtypes and devices are checked, and IndeCateR (unchunked), REINFORCE, RLOO,
    Gumbel-Softmax, DisARM, ReinMax and GumbelRao make no host synchronisation (``torch.compile(fullgraph=True)``
    compiles an estimate); bad values then give wrong results instead of errors.

    Args:
        one_hot: hand ``f`` float one-hot vectors ``[M, *B, D, K]`` instead of
            category indices ``LongTensor[M, *B, D]``; a call may override it.
        generator: default torch generator for the samples; a call may override it.
        validate_args: check values (see above); ``None`` follows the class default.
        chunk_size: evaluate ``f`` on at most this many sample rows (each holding the whole
            batch ``*B``) per call, to bound the size of ``f``'s temporaries; ``None`` evaluates
            them in one call. The result does not depend on it. Each chunk's graph is kept for
            the backward pass, as one call's is (IndeCateR and SCateR recompute theirs instead
            with ``pathwise="all"``). See the Performance guide for when it pays.

    A subclass implements :meth:`_estimate` (and :meth:`_estimate_autoregressive` if
    it supports an :class:`~catlog.autoregressive.Autoregressive`) and :meth:`_cost`;
    its ``__init__`` stores every argument under the argument's name (``repr`` shows them).

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(2, 3, requires_grad=True)      # D = 2 variables, K = 3
        >>> for estimator in (catlog.IndeCateR(2), catlog.RLOO(8), catlog.Exact()):
        ...     estimator(lambda x: x.sum(-1).float(), logits).backward()   # same call for all
        >>> catlog.Exact()(lambda x: x.sum(-1).float(), logits)             # 2 variables of mean 1
        tensor(2., grad_fn=<SumBackward1>)
    """

    _default_validate_args: ClassVar[bool] = True
    chunk_size = Checked(check_chunk_size)

    def __init__(
        self,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.one_hot = check_flag("one_hot", one_hot)
        self.generator = check_generator("generator", generator)
        self.validate_args = None if validate_args is None else check_flag("validate_args", validate_args)
        self.chunk_size = chunk_size

    @staticmethod
    def set_default_validate_args(value: bool) -> None:
        """Turn value checks on or off for every estimator built with ``validate_args=None``."""
        Estimator._default_validate_args = check_flag("value", value)

    @property
    def _validates(self) -> bool:
        """Whether this estimator checks values now: ``validate_args``, else the class default."""
        return Estimator._default_validate_args if self.validate_args is None else self.validate_args

    def __repr__(self) -> str:
        arguments = inspect.signature(type(self).__init__).parameters
        shown = (f"{name}={_argument_repr(getattr(self, name))}" for name in list(arguments)[1:])
        return f"{type(self).__name__}({', '.join(shown)})"

    def __call__(
        self,
        f: Callable[[torch.Tensor], torch.Tensor],
        dist: DistributionLike | None = None,
        *,
        logits: torch.Tensor | None = None,
        one_hot: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Estimate ``E[f(X)]`` for ``X ~ dist``.

        Args:
            f: maps samples ``LongTensor[M, *B, D]`` (one-hot ``[M, *B, D, K]`` if
                ``one_hot``) to ``Tensor[M, *B]``; ``M`` is the estimator's number of
                sample rows. Bool and integer outputs are cast to the logits' dtype;
                complex ones are refused. ``f`` must not write into its input.
            dist: ``D`` independent categorical variables, as
                - logits ``[*B, D, K]`` (unnormalised log-probabilities; ``-inf`` marks
                  an impossible category),
                - ``Independent(Categorical(logits=L), 1)`` or
                  ``Independent(OneHotCategorical(logits=L), 1)`` (batch ``B``, event ``[D]``),
                - a plain ``Categorical`` or ``OneHotCategorical`` of batch shape
                  ``[*B, D]`` (its last batch dimension is taken as the variables);
                the same result as ``L`` for the same generator. Or an
                :class:`~catlog.autoregressive.Autoregressive`, for the estimators that
                support one (SCateR, REINFORCE, RLOO, Exact).
            logits: the old name of ``dist``, still accepted as a keyword.
            one_hot: overrides the estimator's ``one_hot`` for this call.
            generator: overrides the estimator's generator for this call.

        Returns:
            ``Tensor[*B]``: the estimate of ``E[f(X)]``, differentiable.
        """
        given = resolve_alias(dist, logits)
        validate = self._validates
        one_hot = self.one_hot if one_hot is None else check_flag("one_hot", one_hot)
        generator = self.generator if generator is None else check_generator("generator", generator)
        if isinstance(given, Autoregressive):
            check_generator_device(generator, given.device, "dist")
            objective = Objective(
                f,
                given.batch_shape,
                given.num_categories,
                given.dtype,
                given.device,
                one_hot,
                validate,
                chunk_size=self.chunk_size,
            )
            return self._estimate_autoregressive(objective, given, generator)
        checked = as_logits(given)
        every_possible = validate and check_category_logits(checked.detach(), "dist", "of [*B, D]")
        check_generator_device(generator, checked.device, "dist")
        shape, dtype, device = checked.shape, checked.dtype, checked.device
        objective = Objective(
            f,
            shape[:-2],
            shape[-1],
            dtype,
            device,
            one_hot,
            validate,
            every_possible=every_possible,
            chunk_size=self.chunk_size,
        )
        return self._estimate(objective, checked, generator)

    @abc.abstractmethod
    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The estimate for checked ``logits: [*B, D, K]``; returns ``Tensor[*B]``.

        ``objective`` is ``f`` wrapped (checks its output; see ``catlog._objective``);
        ``objective.every_possible`` says whether validation found every logit finite.
        With validation off (``self._validates`` false) it must make no host
        synchronisation.
        """

    def _estimate_autoregressive(
        self, objective: Objective, dist: Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The estimate for an autoregressive ``dist``; returns ``Tensor[*B]``. Refused unless overridden."""
        raise ValueError(
            f"dist: {type(self).__name__} expects independent variables (logits [*B, D, K] or a factorised "
            "categorical distribution), got an Autoregressive; use SCateR, REINFORCE, RLOO or Exact for those"
        )

    def cost(self, num_variables: int, num_categories: int) -> Cost:
        """Samples drawn and rows of ``f`` evaluated per batch element for ``D >= 1``
        variables of ``K >= 1`` categories, when every category is possible."""
        return self._cost(
            check_count("num_variables", num_variables, 1), check_count("num_categories", num_categories, 1)
        )

    @abc.abstractmethod
    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """:meth:`cost` for checked ``D``, ``K``."""


def _argument_repr(value: object) -> str:
    """``repr`` of a constructor argument; a generator by its device (its state is not shown)."""
    if isinstance(value, torch.Generator):
        return f"torch.Generator(device={str(value.device)!r})"
    return repr(value)
