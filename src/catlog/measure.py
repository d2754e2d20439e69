r"""Measure gradient estimators on your own ``f`` and distribution: variance, bias, cost and time.

:func:`compare` answers "which estimator for my model?": it draws ``R`` independent
gradient estimates from each estimator at fixed parameters and reports their
variance, their squared bias against the exact gradient (where enumerating the
``K^D`` states is possible), the evaluations of ``f`` they cost and their time per
estimate relative to the first estimator's. The functions it is built from are
public, so that every measurement in catlog uses the same conventions.

Conventions (the one place where they are defined):

- A gradient estimate is a vector ``g`` of ``P`` entries: the gradient with respect
  to the logits ``[*B, D, K]`` (flattened), or with respect to every tensor of
  ``wrt``, flattened and concatenated in order. ``R`` estimates form ``G: [R, P]``.
- **Variance** is the trace of the covariance, the sum over entries of each entry's
  unbiased variance across the repeats:

  $$\mathrm{Var}[g] = \sum_{i=1}^{P} \frac{1}{R-1} \sum_{r=1}^{R} (g_{ri} - \bar g_i)^2,
  \qquad \bar g_i = \frac{1}{R} \sum_r g_{ri}.$$

  It is an estimator's variance, not the spread of the entries of one estimate.
- **Squared bias** against the exact gradient ``g*``:
  $\|\bar g - g^*\|^2 = \sum_i (\bar g_i - g^*_i)^2$. Even an unbiased estimator
  shows some, since $\bar g$ is a mean of ``R`` noisy estimates: its expected value is
  the **noise floor** $\mathrm{Var}[g] / R$. A squared bias within a few floors is
  what an unbiased estimator shows; one far above it is bias.
- **Signal-to-noise ratio** $\mathrm{SNR} = \|g^*\|^2 / \mathrm{Var}[g]$, with the mean
  estimate $\bar g$ in place of ``g*`` where the exact gradient is not known.
- **Time** of one estimate is its value and backward pass: process CPU time on a CPU,
  wall time with the device synchronised on CUDA. Times are taken in rounds that
  alternate with the first estimator's, so that both see the same load; only their
  ratio is meant to be compared.

Examples:
    >>> import torch, catlog
    >>> logits = torch.randn(3, 4)                      # D = 3 variables, K = 4 categories
    >>> f = lambda x: (x == 2).sum(-1).float() ** 2     # x: [M, D] -> [M]
    >>> table = catlog.compare(f, logits, [catlog.IndeCateR(1), catlog.RLOO(10)], repeats=50)
    >>> [row.name for row in table]
    ['IndeCateR(1)', 'RLOO(10)']
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from catlog._distributions import as_logits
from catlog._validation import check_count
from catlog.autoregressive import Autoregressive
from catlog.estimator import Estimator, _argument_repr
from catlog.exact import Exact

if TYPE_CHECKING:
    from catlog._distributions import DistributionLike

Objective = Callable[[torch.Tensor], torch.Tensor]
EstimatorFactory = Callable[[int], Estimator]
AUTO_EXACT_STATES = 2**16
"""``exact="auto"`` enumerates when ``K^D`` is at most this many states."""


def gradient_variance(gradients: torch.Tensor) -> float:
    r"""The variance of an estimator from ``R`` repeated estimates: $\sum_i \mathrm{Var}_r\, g_{ri}$.

    Args:
        gradients: ``[R, P]``, ``R >= 2`` independent estimates of the same gradient
            (see :func:`repeated_gradients`).

    Returns:
        The sum over the ``P`` entries of their unbiased variance across the ``R``
        estimates (the trace of the covariance), computed in float64.

    Raises:
        ValueError: if ``gradients`` is not ``[R, P]`` with ``R >= 2``.
    """
    return float(_checked(gradients).var(0).sum())


def squared_bias(gradients: torch.Tensor, exact: torch.Tensor) -> float:
    r"""The squared bias of the mean estimate: $\sum_i (\bar g_i - g^*_i)^2$.

    Compare it with :func:`squared_bias_floor`: an unbiased estimator's is about that.

    Args:
        gradients: ``[R, P]``, ``R >= 2`` independent estimates.
        exact: ``[P]``, the exact gradient (see :func:`exact_gradient`).

    Raises:
        ValueError: if the shapes do not match.
    """
    checked = _checked(gradients)
    if exact.shape != checked.shape[1:]:
        raise ValueError(f"exact: expected shape {tuple(checked.shape[1:])}, got {tuple(exact.shape)}")
    return float((checked.mean(0) - exact.double()).square().sum())


def squared_bias_floor(gradients: torch.Tensor) -> float:
    r"""The noise floor of :func:`squared_bias`: $\mathrm{Var}[g] / R$.

    This is the expected squared bias of the mean of ``R`` estimates of an unbiased
    estimator with the variance of :func:`gradient_variance`.

    Args:
        gradients: ``[R, P]``, ``R >= 2`` independent estimates.
    """
    return gradient_variance(gradients) / gradients.shape[0]


def signal_to_noise(gradients: torch.Tensor, exact: torch.Tensor | None = None) -> float:
    r"""The signal-to-noise ratio $\|g^*\|^2 / \mathrm{Var}[g]$.

    Args:
        gradients: ``[R, P]``, ``R >= 2`` independent estimates.
        exact: ``[P]``, the exact gradient ``g*``; without it, the mean estimate stands in.

    Returns:
        The ratio; ``inf`` for an estimator with zero variance.
    """
    checked = _checked(gradients)
    signal = float((checked.mean(0) if exact is None else exact.double()).square().sum())
    variance = float(checked.var(0).sum())
    return signal / variance if variance > 0 else math.inf


def _checked(gradients: torch.Tensor) -> torch.Tensor:
    """``gradients`` in float64 after checking it is ``[R, P]`` with ``R >= 2``."""
    if not isinstance(gradients, torch.Tensor) or gradients.ndim != 2 or gradients.shape[0] < 2:
        shape = tuple(gradients.shape) if isinstance(gradients, torch.Tensor) else type(gradients).__name__
        raise ValueError(f"gradients: expected a tensor [R, P] with R >= 2 estimates, got {shape}")
    return gradients.detach().double()


def repeated_gradients(
    estimator: Estimator,
    f: Objective,
    dist: DistributionLike,
    repeats: int,
    *,
    wrt: Sequence[torch.Tensor] | None = None,
    per_call: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``repeats`` independent gradient estimates of ``sum_b E[f(X_b)]`` at fixed parameters.

    Args:
        estimator: any :class:`~catlog.Estimator`.
        f: the objective, as the estimator takes it: ``[M, *B, D] -> [M, *B]``.
        dist: logits ``[*B, D, K]``, a factorised categorical distribution, or an
            :class:`~catlog.Autoregressive` (as the estimators accept them).
        repeats: ``R >= 1``, how many estimates.
        wrt: the tensors to differentiate with respect to (each must require a
            gradient, and ``dist`` or ``f`` must depend on it); default: the logits
            of ``dist`` (required for an ``Autoregressive``).
        per_call: ``r >= 1``: how many estimates one estimator call computes. With
            ``r > 1`` the logits get a leading repeat dimension, so ``f`` is handed
            ``[M, r, *B, D]`` and must return ``[M, r, *B]`` (an ``f`` that
            broadcasts over leading dimensions does); faster for small problems.
        generator: the estimator's generator for these calls.

    Returns:
        ``[R, P]``: one flattened gradient per row (see the module's conventions).

    Raises:
        ValueError: for ``repeats`` or ``per_call`` below 1, ``per_call > 1`` with an
            ``Autoregressive``, an ``Autoregressive`` without ``wrt``, or a ``wrt``
            tensor that does not require a gradient; and what the estimator raises.
    """
    check_count("repeats", repeats, 1)
    check_count("per_call", per_call, 1)
    if wrt is not None:
        wrt = list(wrt)
        for index, tensor in enumerate(wrt):
            if not isinstance(tensor, torch.Tensor) or not tensor.requires_grad:
                raise ValueError(f"wrt[{index}]: expected a tensor that requires a gradient, got {_describe(tensor)}")
    if isinstance(dist, Autoregressive):
        if wrt is None:
            raise ValueError("wrt: an Autoregressive has no logits to differentiate; expected its parameters, got None")
        if per_call > 1:
            raise ValueError(f"per_call: an Autoregressive takes one estimate per call, expected 1, got {per_call}")
    parts = []
    for start in range(0, repeats, per_call):
        parts.append(_gradients_of_call(estimator, f, dist, min(per_call, repeats - start), wrt, generator))
    return torch.cat(parts)


def _gradients_of_call(
    estimator: Estimator,
    f: Objective,
    dist: DistributionLike,
    count: int,
    wrt: list[torch.Tensor] | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``[count, P]`` gradients from one estimator call (a leading repeat dimension where ``count > 1``)."""
    if isinstance(dist, Autoregressive):
        given: DistributionLike = dist
    else:
        logits = as_logits(dist)
        given = logits.detach() if wrt is None else logits
        if count > 1:
            given = given.expand(count, *given.shape)
        if wrt is None:
            given = given.clone().requires_grad_()
    value = estimator(f, given, generator=generator)
    if wrt is None:
        assert isinstance(given, torch.Tensor)
        return _gradient(value.sum(), [given], retain_graph=False).reshape(count, -1)
    per_repeat = value.reshape(count, -1).sum(-1) if count > 1 else value.sum().reshape(1)
    return torch.stack([_gradient(per_repeat[repeat], wrt, retain_graph=True) for repeat in range(count)])


def _gradient(output: torch.Tensor, inputs: list[torch.Tensor], *, retain_graph: bool) -> torch.Tensor:
    """The gradient of a scalar ``output`` w.r.t. ``inputs``, flattened and concatenated; zero where
    ``output`` does not depend on an input (an estimator that gives no gradient, like a relaxation
    of an ``f`` that is piecewise constant)."""
    grads: Sequence[torch.Tensor | None] = [None] * len(inputs)
    if output.requires_grad:
        grads = torch.autograd.grad(output, inputs, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([torch.zeros_like(x).flatten() if g is None else g.flatten() for g, x in zip(grads, inputs)])


def exact_gradient(
    f: Objective,
    dist: DistributionLike,
    *,
    wrt: Sequence[torch.Tensor] | None = None,
    one_hot: bool = False,
    max_states: int = 2**20,
) -> torch.Tensor:
    """The exact gradient of ``sum_b E[f(X_b)]`` by enumerating the ``K^D`` states (:class:`~catlog.Exact`).

    Args:
        f: as in :func:`repeated_gradients`.
        dist: as in :func:`repeated_gradients`.
        wrt: as in :func:`repeated_gradients`.
        one_hot: hand ``f`` one-hot states ``[M, *B, D, K]`` instead of indices.
        max_states: refuse problems with more states than this.

    Returns:
        ``[P]``, flattened as in :func:`repeated_gradients`.

    Raises:
        ValueError: where ``K^D > max_states``, and as :func:`repeated_gradients`.
    """
    return repeated_gradients(Exact(max_states, one_hot=one_hot), f, dist, 1, wrt=wrt)[0]


def _problem_size(dist: DistributionLike) -> tuple[int, int]:
    """``(D, K)``: the number of variables and of categories of ``dist`` (as in :func:`repeated_gradients`)."""
    if isinstance(dist, Autoregressive):
        return dist.num_variables, dist.num_categories
    num_variables, num_categories = as_logits(dist).shape[-2:]
    return num_variables, num_categories


def largest_size(
    factory: EstimatorFactory,
    num_variables: int,
    num_categories: int,
    budget: int,
    *,
    field: Literal["samples", "evaluations"] = "evaluations",
) -> int | None:
    """The largest size ``n`` whose ``factory(n).cost(D, K).<field>`` is at most ``budget``.

    Equal-evaluation (or equal-sample) sizing: ``factory`` is what builds an
    estimator from its size, an estimator class such as ``catlog.RLOO`` or a
    function such as ``lambda n: catlog.GumbelSoftmax(n, 0.5)``. Costs must grow
    with ``n``. The smallest size tried is the first of ``1, 2, 3, 4`` the factory
    accepts (``RLOO`` needs 2).

    Args:
        factory: ``n -> Estimator``.
        num_variables: ``D``.
        num_categories: ``K``.
        budget: samples or evaluations of ``f`` per estimate and batch element.
        field: ``"evaluations"`` or ``"samples"``.

    Returns:
        The size, or ``None`` where even the smallest size costs more than ``budget``.

    Raises:
        ValueError: if the factory accepts none of the sizes ``1`` to ``4``, or for a bad ``field``.
    """
    if field not in ("samples", "evaluations"):
        raise ValueError(f"field: expected 'samples' or 'evaluations', got {field!r}")

    def cost(size: int) -> int:
        value: int = getattr(factory(size).cost(num_variables, num_categories), field)
        return value

    low = _smallest_size(factory)
    if cost(low) > budget:
        return None
    high = low + 1
    while cost(high) <= budget:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= budget else (low, middle)
    return low


def _smallest_size(factory: EstimatorFactory) -> int:
    """The first size of ``1..4`` that ``factory`` accepts."""
    for size in range(1, 5):
        try:
            factory(size)
        except ValueError:
            continue
        return size
    raise ValueError(f"factory: expected a function that builds an estimator from a size in 1..4, got {factory!r}")


def interleaved_ms(
    calls: Sequence[Callable[[], object]],
    *,
    rounds: int = 7,
    min_seconds: float = 0.0,
    device: torch.device | str | None = None,
) -> list[float]:
    """The median time in milliseconds of each call, the calls timed in alternation.

    After one warm-up call each, every round calls each of ``calls`` once in turn,
    timed separately; there are at least ``rounds`` rounds, and more until they
    took ``min_seconds`` in all. Alternating lets every call see the same machine
    load, so the ratio of two medians is meaningful where the medians are not.

    Args:
        calls: the functions to time (no arguments).
        rounds: ``>= 1``.
        min_seconds: ``>= 0``.
        device: a CUDA device: wall time with the device synchronised around each
            call; otherwise (CPU) process CPU time.

    Returns:
        One median per call, in milliseconds.
    """
    check_count("rounds", rounds, 1)
    if not min_seconds >= 0:
        raise ValueError(f"min_seconds: expected a number >= 0, got {min_seconds!r}")
    on_cuda = device is not None and torch.device(device).type == "cuda"
    clock = time.perf_counter if on_cuda else time.process_time

    def timed(call: Callable[[], object]) -> float:
        if on_cuda:
            torch.cuda.synchronize(device)
        start = clock()
        call()
        if on_cuda:
            torch.cuda.synchronize(device)
        return 1e3 * (clock() - start)

    for call in calls:
        timed(call)
    times: list[list[float]] = [[] for _ in calls]
    while len(times[0]) < rounds or sum(map(sum, times)) < 1e3 * min_seconds:
        for call, kept in zip(calls, times):
            kept.append(timed(call))
    return [statistics.median(kept) for kept in times]


@dataclass(frozen=True)
class EstimatorRow:
    """One estimator measured by :func:`compare`.

    Attributes:
        name: the estimator's name (its key, or its ``repr``).
        estimator: the estimator with its size (after equal-evaluation sizing) and the
            arguments that differ from their defaults, as ``RLOO(14)``.
        samples: per estimate and batch element, from ``cost(D, K)``.
        evaluations: of ``f``, per estimate and batch element, from ``cost(D, K)``.
        repeats: ``R``, the estimates behind the statistics.
        variance: :func:`gradient_variance`.
        sq_bias: :func:`squared_bias`, or ``None`` without the exact gradient.
        sq_bias_floor: :func:`squared_bias_floor`.
        snr: :func:`signal_to_noise` (against the exact gradient where known).
        ms: median time of one estimate (value and backward pass), ``None`` untimed.
        time_ratio: ``ms`` over the first estimator's, timed in alternation; ``None`` untimed.
    """

    name: str
    estimator: str
    samples: int
    evaluations: int
    repeats: int
    variance: float
    sq_bias: float | None
    sq_bias_floor: float
    snr: float
    ms: float | None
    time_ratio: float | None

    @property
    def biased(self) -> bool | None:
        """Whether the squared bias exceeds ten noise floors (``None`` without the exact gradient)."""
        return None if self.sq_bias is None else self.sq_bias > 10 * self.sq_bias_floor


@dataclass(frozen=True)
class Comparison:
    """The rows of :func:`compare`, one per estimator, in the order given.

    Printing it gives a table; :meth:`to_dicts` gives plain rows for ``csv``, ``json``
    or ``pandas.DataFrame``. It iterates over its rows and is indexed by position or name.

    Attributes:
        rows: the :class:`EstimatorRow` of each estimator.
        num_variables: ``D``.
        num_categories: ``K``.
        exact_norm: ``|g*|^2``, or ``None`` without the exact gradient.
    """

    rows: tuple[EstimatorRow, ...]
    num_variables: int
    num_categories: int
    exact_norm: float | None

    def __iter__(self) -> Iterator[EstimatorRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | str) -> EstimatorRow:
        if isinstance(key, str):
            for row in self.rows:
                if row.name == key:
                    return row
            raise KeyError(key)
        return self.rows[key]

    def to_dicts(self) -> list[dict[str, Any]]:
        """One ``dict`` per row, keys the fields of :class:`EstimatorRow`."""
        return [asdict(row) for row in self.rows]

    def __str__(self) -> str:
        exact = "" if self.exact_norm is None else f", |exact gradient|^2 = {self.exact_norm:.3g}"
        repeats = self.rows[0].repeats if self.rows else 0
        head = f"D = {self.num_variables}, K = {self.num_categories}, {repeats} estimates each{exact}"
        columns = ("estimator", "samples", "evals", "variance", "bias^2", "(floor)", "SNR", "ms", "t/t_1")
        cells = [columns] + [_cells(row) for row in self.rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
            for line in cells
        ]
        return "\n".join([head, lines[0], "-" * len(lines[0]), *lines[1:]])


def _cells(row: EstimatorRow) -> tuple[str, ...]:
    """The table cells of one row (empty where a value is not known)."""
    known = row.sq_bias is not None
    return (
        row.name,
        str(row.samples),
        str(row.evaluations),
        f"{row.variance:.3e}",
        f"{row.sq_bias:.2e}" if row.sq_bias is not None else "",
        f"{row.sq_bias_floor:.2e}" if known else "",
        f"{row.snr:.3g}",
        "" if row.ms is None else f"{row.ms:.3g}",
        "" if row.time_ratio is None else f"{row.time_ratio:.2f}",
    )


def compare(
    f: Objective,
    dist: DistributionLike,
    estimators: Mapping[str, Estimator | EstimatorFactory] | Sequence[Estimator],
    *,
    repeats: int = 200,
    exact: bool | Literal["auto"] | torch.Tensor = "auto",
    generator: torch.Generator | None = None,
    wrt: Sequence[torch.Tensor] | None = None,
    evaluations: int | Literal["first"] | None = None,
    per_call: int = 1,
    timing_rounds: int = 7,
) -> Comparison:
    r"""Measure estimators on your own ``f`` and ``dist``: variance, squared bias, cost and time.

    For each estimator it draws ``repeats`` independent estimates of the gradient of
    $\sum_b \mathbb{E}_{X_b \sim p_b}[f(X_b)]$ with respect to the logits (or to
    ``wrt``) at fixed parameters and reports, in one :class:`EstimatorRow`:

    - the variance $\sum_i \mathrm{Var}[g_i]$ across the estimates;
    - where the exact gradient $g^*$ is known, the squared bias $\|\bar g - g^*\|^2$
      beside its noise floor $\mathrm{Var}[g] / R$ (what an unbiased estimator shows);
    - the samples and evaluations of ``f`` per estimate, from ``cost(D, K)``;
    - the time of one estimate (value and backward pass) and its ratio to the first
      estimator's, timed in alternation with it.

    The conventions are the module's (:mod:`catlog.measure`).

    Args:
        f: the objective ``[M, *B, D] -> [M, *B]``, as the estimators take it.
        dist: logits ``[*B, D, K]``, a factorised categorical distribution
            (``Independent(Categorical(logits=L), 1)``), or a
            :class:`~catlog.Autoregressive` (then ``wrt`` is required).
        estimators: the estimators, as a sequence (named by their ``repr``) or a
            mapping from names. With ``evaluations`` a mapping's value may also be a
            factory ``size -> Estimator`` (``catlog.RLOO``, ``lambda n: catlog.GumbelSoftmax(n, 0.5)``).
        repeats: ``R >= 2`` estimates per estimator.
        exact: ``True``: compute the exact gradient by enumeration (:class:`~catlog.Exact`,
            handing ``f`` one-hot states if the first estimator does);
            ``False``: do not (no squared bias); ``"auto"``: where ``K^D`` is at most
            :data:`AUTO_EXACT_STATES`; or the exact gradient itself, ``[P]``.
        generator: the generator of every estimate (default: torch's global one).
        wrt: tensors to take the gradient with respect to (e.g. a network's
            parameters); default: the logits.
        evaluations: equal-evaluation sizing: each factory is built at the largest
            size whose evaluations of ``f`` are at most this budget (per estimate and
            batch element); ``"first"``: the first estimator's evaluations (it must be
            an estimator, not a factory). Estimators given as such keep their size.
        per_call: estimates per estimator call (see :func:`repeated_gradients`);
            ``> 1`` needs an ``f`` that broadcasts over a leading repeat dimension.
        timing_rounds: rounds of alternating timed estimates; ``0``: no timing.

    Returns:
        A :class:`Comparison`: prints as a table, ``.to_dicts()`` gives plain rows.

    Raises:
        ValueError: for an empty ``estimators``, an entry that is neither an estimator
            nor (with ``evaluations``) a factory, a budget below a factory's smallest
            size, ``repeats < 2``, a bad ``exact``, ``evaluations`` or ``timing_rounds``;
            and what :func:`repeated_gradients` and the estimators raise.

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(4, 2)                  # D = 4 binary variables
        >>> f = lambda x: (x.sum(-1) >= 3).float()      # an indicator
        >>> rows = catlog.compare(f, logits, {"IndeCateR": catlog.IndeCateR(2), "RLOO": catlog.RLOO},
        ...                       evaluations="first", repeats=100, timing_rounds=0)
        >>> rows["RLOO"].evaluations                   # sized to IndeCateR(2)'s 2 (1 + D (K - 1)) = 10
        10
    """
    check_count("repeats", repeats, 2)
    check_count("timing_rounds", timing_rounds, 0)
    named = _named(estimators)
    num_variables, num_categories = _problem_size(dist)
    built = _sized(named, num_variables, num_categories, evaluations)
    exact_grad = _exact(exact, f, dist, wrt, built[0][1].one_hot, (num_variables, num_categories))
    rows = []
    device = dist.device if isinstance(dist, Autoregressive) else as_logits(dist).device
    first = built[0][1]
    for name, estimator in built:
        grads = repeated_gradients(estimator, f, dist, repeats, wrt=wrt, per_call=per_call, generator=generator)
        if exact_grad is not None and exact_grad.shape != grads.shape[1:]:
            raise ValueError(
                f"exact: expected the gradient's shape {tuple(grads.shape[1:])}, got {tuple(exact_grad.shape)}"
            )
        ms: float | None = None
        ratio: float | None = None
        if timing_rounds:
            contenders = [estimator] if estimator is first else [estimator, first]
            medians = interleaved_ms(
                [_one_estimate(e, f, dist, wrt, generator) for e in contenders], rounds=timing_rounds, device=device
            )
            ms, ratio = medians[0], medians[0] / medians[-1] if medians[-1] > 0 else math.nan
        cost = estimator.cost(num_variables, num_categories)
        rows.append(
            EstimatorRow(
                name,
                _short_repr(estimator),
                cost.samples,
                cost.evaluations,
                repeats,
                gradient_variance(grads),
                None if exact_grad is None else squared_bias(grads, exact_grad),
                squared_bias_floor(grads),
                signal_to_noise(grads, exact_grad),
                ms,
                ratio,
            )
        )
    norm = None if exact_grad is None else float(exact_grad.double().square().sum())
    return Comparison(tuple(rows), num_variables, num_categories, norm)


def _one_estimate(
    estimator: Estimator,
    f: Objective,
    dist: DistributionLike,
    wrt: Sequence[torch.Tensor] | None,
    generator: torch.Generator | None,
) -> Callable[[], object]:
    """A call computing one gradient estimate (what :func:`compare` times)."""
    return lambda: repeated_gradients(estimator, f, dist, 1, wrt=wrt, generator=generator)


def _named(
    estimators: Mapping[str, Estimator | EstimatorFactory] | Sequence[Estimator],
) -> list[tuple[str, Estimator | EstimatorFactory]]:
    """``(name, estimator or factory)`` pairs, named by their ``repr`` if given as a sequence."""
    if isinstance(estimators, Mapping):
        pairs = [(str(name), value) for name, value in estimators.items()]
    elif isinstance(estimators, Sequence) and not isinstance(estimators, str):
        pairs = [(_short_repr(value), value) for value in estimators]
    else:
        raise ValueError(f"estimators: expected a sequence of estimators or a mapping, got {_describe(estimators)}")
    if not pairs:
        raise ValueError("estimators: expected at least one estimator, got none")
    return pairs


def _short_repr(value: object) -> str:
    """An estimator's name: its class and the arguments that differ from their defaults (``RLOO(10)``);
    the first one by its value alone."""
    if not isinstance(value, Estimator):
        return repr(value)
    parameters = list(inspect.signature(type(value).__init__).parameters.values())[1:]
    shown = []
    for index, parameter in enumerate(parameters):
        argument = getattr(value, parameter.name)
        if index == 0:
            shown.append(repr(argument))
        elif parameter.default is inspect.Parameter.empty or argument != parameter.default:
            shown.append(f"{parameter.name}={_argument_repr(argument)}")
    return f"{type(value).__name__}({', '.join(shown)})"


def _sized(
    named: list[tuple[str, Estimator | EstimatorFactory]],
    num_variables: int,
    num_categories: int,
    evaluations: int | Literal["first"] | None,
) -> list[tuple[str, Estimator]]:
    """Every entry as an estimator: factories built at the largest size within the evaluation budget."""
    budget: int | None
    if evaluations == "first":
        first = named[0][1]
        if not isinstance(first, Estimator):
            raise ValueError(f"evaluations: 'first' needs the first entry to be an estimator, got {_describe(first)}")
        budget = first.cost(num_variables, num_categories).evaluations
    elif evaluations is None:
        budget = None
    else:
        budget = check_count("evaluations", evaluations, 1)
    built = []
    for name, value in named:
        if isinstance(value, Estimator):
            built.append((name, value))
            continue
        if budget is None or not callable(value):
            wanted = "an estimator or (with evaluations=) a factory size -> estimator"
            raise ValueError(f"estimators[{name!r}]: expected {wanted}, got {_describe(value)}")
        size = largest_size(value, num_variables, num_categories, budget)
        if size is None:
            raise ValueError(
                f"evaluations: {name} costs more than {budget} evaluations at its smallest size; "
                "expected a larger budget"
            )
        built.append((name, value(size)))
    return built


def _exact(
    exact: bool | Literal["auto"] | torch.Tensor,
    f: Objective,
    dist: DistributionLike,
    wrt: Sequence[torch.Tensor] | None,
    one_hot: bool,
    size: tuple[int, int],
) -> torch.Tensor | None:
    """The exact gradient that ``exact`` asks for (``f`` handed one-hot states if ``one_hot``), or ``None``."""
    num_variables, num_categories = size
    if isinstance(exact, torch.Tensor):
        return exact.detach().flatten().double()
    if exact is False or (exact == "auto" and num_categories**num_variables > AUTO_EXACT_STATES):
        return None
    if exact is True or exact == "auto":
        return exact_gradient(f, dist, wrt=wrt, one_hot=one_hot).double()
    raise ValueError(f"exact: expected True, False, 'auto' or the exact gradient [P], got {_describe(exact)}")


def _describe(value: object) -> str:
    """A short description of a refused argument."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} (requires_grad={value.requires_grad})"
    return f"{value!r} of type {type(value).__name__}"
