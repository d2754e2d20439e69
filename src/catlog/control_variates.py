"""Control variates for the CatLog-Derivative estimators: what IndeCateR subtracts from its coefficients.

IndeCateR's term for variable ``d`` is ``T_d(x) = sum_k grad p_d(k) f(x_{!=d}, k)``. As
``sum_k grad p_d(k) = 0``, a part of ``f`` without ``x_d`` drops out and a part with
``x_d`` alone gives its exact gradient: the variance comes from how ``x_d`` interacts with
the other variables. A control variate gives rows ``s_dk(x)`` and a differentiable
``m(p)`` with

``E_{X ~ p}[sum_d sum_k s_dk(X) grad p_d(k)] = grad m``,

and IndeCateR's gradient becomes ``sum_d sum_k (c_dk - 1/N sum_n s_dk(x^n)) grad p_d(k) + grad m``:
unbiased whatever ``s``, with less variance the closer ``s_dk(x)`` follows ``f(x_{!=d}, k)``
(up to terms constant in ``k``, which cancel).

Interactions. For matrices ``A_de`` (``d != e``, ``K x K``) that do not depend on the
sample ``x`` they are applied to,

``s_dk(x) = e_k^T sum_{e != d} A_de (x_e - mu_e)``, ``mu_e = E[x_e] = p_e``, ``m = 0``

(one-hot ``x``): ``s_d`` is linear in ``x_{!=d} - mu_{!=d}`` and independent of
``x_{!=d}``'s mean, so its expectation is zero. If ``f(x) = sum_{d != e} x_d^T W_de x_e / 2
+ sum_d u_d^T x_d`` (``W_ed = W_de^T``), ``A = W`` gives
``c_dk - s_dk = e_k^T (u_d + sum_e W_de mu_e) + (terms without k)``: the exact gradient,
zero variance (:class:`Bilinear`). :class:`Taylor` takes ``A`` from the Hessian of ``f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import torch

from catlog._sampling import sample_categorical
from catlog._validation import check_count, check_flag, check_positive

RelaxedF = Callable[[torch.Tensor], torch.Tensor]
"""``f`` on relaxed one-hot ``[M, *B, D, K]`` floats, returning ``[M, *B]`` (encoded as the
estimator hands ``f`` its input: one-hot, or category values ``sum_k k y_k``)."""


class Correction(NamedTuple):
    """What a control variate gives an estimate.

    Attributes:
        rows: ``[*B, D, K]``, ``1/N sum_n s_dk(x^n)``: subtracted from IndeCateR's
            coefficients ``c_dk`` in the score term (not in the value); not differentiated.
        expectation: ``[*B]``, ``m``, differentiable in the logits, with
            ``grad m = E[sum_d sum_k s_dk(X) grad p_d(k)]``; only its gradient is used.
    """

    rows: torch.Tensor
    expectation: torch.Tensor


@runtime_checkable
class ControlVariate(Protocol):
    """A control variate for :class:`~catlog.indecater.IndeCateR` (``control_variate=``).

    Called once per estimate with:

    - ``f``: ``f`` on relaxed one-hot ``[M, *B, D, K]`` floats, returning ``[M, *B]``
      (may be ignored);
    - ``samples``: ``LongTensor[N, *B, D]``, the estimate's samples ``x^n``;
    - ``logits``: ``[*B, D, K]`` with autograd (for ``m``);
    - ``generator``: the estimate's generator, for any draws of its own.

    Returns a :class:`Correction`. The estimate stays unbiased when
    ``E[sum_{d,k} s_dk(X) grad p_d(k)] = grad m`` (see the module's docstring): in
    particular ``s`` must not depend on the sample it is applied to through anything
    but its value (fit nothing on ``x^n`` that is then applied to ``x^n``). Two forms:

    - interaction terms with zero mean: ``s_dk(x) = e_k^T sum_{e != d} A_de (x_e - mu_e)``,
      ``m = 0`` (:class:`Bilinear`, :class:`Taylor`);
    - a surrogate ``q`` with an analytic expectation: ``s_dk(x) = q(x_{!=d}, k)``,
      ``m = E_p[q]`` (the estimate then runs IndeCateR on ``f - q`` plus the exact ``grad E[q]``).

    ``s_dk`` should not depend on ``x_d``: IndeCateR's ``T_d`` does not, so a term in
    ``x_d`` only adds variance.
    """

    def __call__(
        self, f: RelaxedF, samples: torch.Tensor, logits: torch.Tensor, generator: torch.Generator | None
    ) -> Correction: ...


def centred_one_hot(samples: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``onehot(x) - mu``: ``[N, *B, D, K]`` for ``samples: LongTensor[N, *B, D]`` and ``probs: [*B, D, K]``."""
    categories = torch.arange(probs.shape[-1], device=probs.device)
    return (samples.unsqueeze(-1) == categories).to(probs.dtype) - probs


class Bilinear:
    """Interaction coefficients given by the user: ``s_dk(x) = e_k^T sum_{e != d} A_de (x_e - mu_e)``, ``m = 0``.

    Exact (zero variance) for ``f(x) = sum_{d != e} x_d^T A_de x_e / 2 + sum_d u_d^T x_d``
    with ``A_ed = A_de^T``; unbiased for any ``A`` fixed before the samples are drawn
    (the diagonal blocks ``A_dd`` are ignored).

    Args:
        weights: ``A: [*B', D, K, D, K]`` with ``A[..., d, k, e, j]`` the coefficient of
            ``x_dk x_ej``; ``*B'`` broadcasts against the batch ``*B``.
    """

    def __init__(self, weights: torch.Tensor) -> None:
        if weights.ndim < 4 or weights.shape[-4:-2] != weights.shape[-2:]:
            raise ValueError(f"weights: expected shape [*B, D, K, D, K], got {tuple(weights.shape)}")
        num_variables = weights.shape[-4]
        off_diagonal = ~torch.eye(num_variables, dtype=torch.bool, device=weights.device)
        self.weights = weights * off_diagonal.view(num_variables, 1, num_variables, 1)

    def __repr__(self) -> str:
        return f"Bilinear(weights of shape {tuple(self.weights.shape)})"

    def __call__(
        self, f: RelaxedF, samples: torch.Tensor, logits: torch.Tensor, generator: torch.Generator | None
    ) -> Correction:
        probs = logits.detach().softmax(-1)
        direction = centred_one_hot(samples, probs).mean(0)
        rows = torch.einsum("...dkej,...ej->...dk", self.weights.to(probs.dtype), direction)
        return Correction(rows.expand(probs.shape), probs.new_zeros(probs.shape[:-2]))


TaylorPoints = Literal["mean", "others"]


class Taylor:
    """Interactions ``A_de = H_de`` from the Hessian ``H`` of ``f`` in its one-hot input
    (``control_variate="taylor"`` is ``Taylor()``: the mean Hessian at 4 extra draws, each
    moved a quarter of the way to the mean).

    ``s_dk(x^n) = e_k^T [H^(n) (onehot(x^n) - mu)]_d`` with ``H^(n)`` the Hessian at a point
    independent of ``x^n``, chosen by ``points``:

    - ``"others"``: the mean of the Hessians at the other samples ``x^m``, ``m != n``
      (leave one out; ``N >= 2``);
    - ``"mean"``: at the relaxed mean ``mu`` (``f`` then sees fractional one-hots);
    - an integer ``S``: the mean of the Hessians at ``S`` extra samples drawn for the
      purpose (not evaluated as samples).

    Only Hessian-vector products are formed, never ``H``: as ``1/N sum_n s(x^n)`` is all an
    estimate needs, it is ``sum_m H(z_m) v_m`` over the points ``z_m`` with one direction
    each (for ``"others"``, ``v_m = sum_{n != m} (onehot(x^n) - mu) / (N (N - 1))``), one
    double backward pass through ``f`` on ``N``, ``1`` or ``S`` rows. Rows and batch
    elements are independent problems, so the Hessian of their sum is block-diagonal and
    one pass serves all. Unbiased because the point does not depend on the sample the
    product is applied to (``E[onehot(x^n)] = mu``). Exact (zero variance) when ``f`` is a
    quadratic whose diagonal blocks are zero, ``f(x) = sum_{d != e} x_d^T W_de x_e / 2 +
    u^T x`` (any function of one-hot ``x`` that is quadratic on the one-hot vertices can be
    written so, as ``x_d^T V x_d = diag(V)^T x_d`` there). The product also holds
    ``H_dd (onehot(x_d) - mu_d)``, which has mean zero but depends on ``x_d``: for ``f``
    whose Hessian has diagonal blocks it adds the variance of one block per variable
    against the ``D - 1`` off-diagonal ones it removes; ``remove_diagonal`` leaves it out
    at ``D`` times the cost (a product per variable, direction masked to ``e != d``).

    Measured (``benchmarks/control_variates.py``, variance against plain IndeCateR(2)):
    on figure 3's DVAE encoder (``D = 200``, a trained ReLU decoder) 0.066 with 4 draws,
    0.070 with 2, 0.12 at the others, 0.25 at the mean, at 0.95-1.08 times the CPU time;
    removing the diagonal there changed nothing measurable, for 3-6 times the time. With
    few variables, or an ``f`` whose curvature in each variable adds up coherently over
    many outputs (a logistic decoder with ``D = 20`` and 30 outputs), the diagonal term
    dominates and ``remove_diagonal=False`` can give *more* variance than plain
    IndeCateR (1.7-2x on that decoder), ``remove_diagonal=True`` 13x less. At kinks
    (``|x - b|`` at ``x = b``, where autograd takes the derivative 0) the Hessian at a
    vertex is poor (hence ``shrink``): on a squared Hamming distance (``D = 12``) 0.78 at the vertices,
    0.12 with the default shrink, 0 at the mean without the diagonal.

    Conditions: ``f`` must accept float input (one-hot ``[M, *B, D, K]`` with
    ``one_hot=True``, else category values ``sum_k k y_k`` ``[M, *B, D]``, in ``[0, 1]`` for
    ``K = 2``) and be twice differentiable in it almost everywhere; otherwise a
    ``ValueError`` naming ``control_variate``. Cost: one forward and two backward passes
    of ``f`` on ``N`` rows for ``"others"`` (1 for ``"mean"``, ``S`` for an integer),
    against IndeCateR's ``N (1 + D (K - 1))`` rows without autograd.

    Args:
        points: ``"others"``, ``"mean"`` or a number of extra draws ``S >= 1``.
        remove_diagonal: leave the blocks ``H_dd`` out (``D`` products per point instead of one).
        shrink: move the points that are samples (``"others"``, draws) this fraction of the
            way to ``mu``, ``(1 - shrink) onehot(z) + shrink mu`` (still independent of the
            corrected sample): off the vertices, where an ``f`` with kinks (``|x - b|``) has
            a Hessian that says little. ``0`` keeps the vertices.
    """

    def __init__(self, points: TaylorPoints | int = 4, remove_diagonal: bool = False, shrink: float = 0.25) -> None:
        if isinstance(points, str):
            if points not in ("mean", "others"):
                raise ValueError(f"points: expected 'mean', 'others' or an integer >= 1, got {points!r}")
        else:
            check_count("points", points, 1)
        self.points = points
        self.remove_diagonal = check_flag("remove_diagonal", remove_diagonal)
        if isinstance(shrink, bool) or not isinstance(shrink, (int, float)) or not 0 <= shrink <= 1:
            raise ValueError(f"shrink: expected a number in [0, 1], got {shrink!r}")
        self.shrink = float(shrink)

    def __repr__(self) -> str:
        return f"Taylor(points={self.points!r}, remove_diagonal={self.remove_diagonal}, shrink={self.shrink})"

    def check_num_samples(self, num_samples: int) -> None:
        """Refuse ``points="others"`` with fewer than two samples (no other sample to fit on)."""
        if self.points == "others" and num_samples < 2:
            raise ValueError(
                f"control_variate: Taylor(points='others') takes the Hessian at the other samples (leave one "
                f"out) and needs num_samples >= 2, got {num_samples}; use Taylor(points='mean') or "
                "Taylor(points=S) with S extra draws"
            )

    def __call__(
        self, f: RelaxedF, samples: torch.Tensor, logits: torch.Tensor, generator: torch.Generator | None
    ) -> Correction:
        num_samples = samples.shape[0]
        self.check_num_samples(num_samples)
        probs = logits.detach().softmax(-1)
        centred = centred_one_hot(samples, probs)
        if self.points == "others":
            points = (1 - self.shrink) * centred + probs
            directions = (centred.sum(0) - centred) / (num_samples * (num_samples - 1))
        elif self.points == "mean":
            points, directions = probs.unsqueeze(0), centred.mean(0, keepdim=True)
        else:
            draws = sample_categorical(logits.detach().log_softmax(-1), (int(self.points),), generator)
            points = (1 - self.shrink) * centred_one_hot(draws, probs) + probs
            directions = centred.mean(0, keepdim=True).expand(points.shape) / int(self.points)
        if self.remove_diagonal:
            rows = off_diagonal_products(f, points, directions).sum(0)
        else:
            rows = hessian_vector_products(f, points, directions).sum(0)
        return Correction(rows, probs.new_zeros(probs.shape[:-2]))


def hessian_vector_products(f: RelaxedF, points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``H_m v_m`` for every row ``m``: ``H_m`` the Hessian of ``f`` at ``points[m]`` in its input.

    One forward and two backward passes (double backward) of ``f`` on all rows at once: as
    rows (and batch elements) are independent, the Hessian of ``sum_m f(points[m])`` is
    block-diagonal and its product with ``directions`` holds every row's product.

    Args:
        f: ``[M, *B, D, K] -> [M, *B]``.
        points, directions: ``[M, *B, D, K]``.

    Returns:
        ``[M, *B, D, K]``, without autograd.
    """
    with torch.enable_grad():
        inputs = points.detach().requires_grad_(True)
        try:
            total = f(inputs).sum()
        except (TypeError, RuntimeError, IndexError) as error:
            raise ValueError(
                "control_variate: the Taylor control variate evaluates f on float (relaxed one-hot) input, "
                f"and f failed on it: {error}"
            ) from error
        gradient = None
        if total.requires_grad:
            (gradient,) = torch.autograd.grad(total, inputs, create_graph=True, allow_unused=True)
        if gradient is None:
            raise ValueError(
                "control_variate: the Taylor control variate differentiates f in its input, got an f whose "
                "output has no gradient path to its (float) input; f must be differentiable in x"
            )
        if not gradient.requires_grad:  # f is linear in its input: no interactions
            return torch.zeros_like(points)
        (product,) = torch.autograd.grad(gradient, inputs, directions, allow_unused=True)
    return torch.zeros_like(points) if product is None else product.detach()


def off_diagonal_products(f: RelaxedF, points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``sum_{e != d} H_de v_e`` for every row and variable ``d``: :func:`hessian_vector_products`
    on ``D`` copies of the rows, copy ``d`` with its direction zero at variable ``d``.

    Shapes: ``points, directions: [M, *B, D, K]``; returns ``[M, *B, D, K]`` (block ``d`` from copy ``d``).
    """
    num_variables = points.shape[-2]
    others = ~torch.eye(num_variables, dtype=torch.bool, device=points.device)  # [copy d, variable e]
    masks = others.view(num_variables, *([1] * (points.ndim - 2)), num_variables, 1)
    copies = points.expand(num_variables, *points.shape).flatten(0, 1)
    products = hessian_vector_products(f, copies, (directions * masks).flatten(0, 1))
    products = products.view(num_variables, *points.shape)  # [D, M, *B, D, K]
    return products.diagonal(dim1=0, dim2=-2).movedim(-1, -2)


class Fitted:
    r"""Interactions fitted on IndeCateR's own rows, for an ``f`` with no relaxation (an
    indicator, a program): ``s_dk(x^n) = e_k^T sum_{e != d} A^(n)_de (onehot(x^n_e) - mu_e)``, ``m = 0``.

    The rows ``r^n_dk = f(x^n_{!=d}, k)`` that IndeCateR evaluates anyway show how the
    effect of ``x_d`` depends on the other variables. With the differences
    $y^n_{dk} = f(x^n_{\neq d}, k) - f(x^n)$ (zero at $k = x^n_d$; a shift constant in
    ``k`` cancels in the score term), the coefficients are shrunk conditional means

    $$
    A_{de}[k, j] = \frac{\sum_m y^m_{dk} [x^m_e = j] + \lambda \bar y_{dk}}{\sum_m [x^m_e = j] + \lambda},
    \qquad \bar y_{dk} = \frac{1}{M} \sum_m y^m_{dk},
    $$

    over the fitting rows ``m`` (``lambda = prior`` pseudo-observations at the overall
    mean, for categories seen rarely). For independent variables the best approximation
    of ``y_dk`` that is additive in ``x_{!=d}`` is ``sum_e E[y_dk | x_e]`` up to a constant
    (the first-order ANOVA terms); these are its estimates. A part of ``A_de[k, :]``
    constant in ``j`` cancels against ``onehot(x_e) - mu_e``, so with a single fitting row
    the correction is zero.

    Unbiased: the coefficients that correct sample ``n`` are fitted on rows independent of
    ``x^n`` given the logits, so ``E[s_dk(x^n) | A^(n)] = e_k^T sum_e A^(n)_de (mu_e - mu_e) = 0``.
    The rows come from

    - ``leave_one_out``: the other samples ``m != n`` of the same estimate (``N >= 2``);
    - ``memory > 0``: earlier estimates' rows, summed with weight ``memory^age`` (the
      statistics are updated after the correction is computed). They are stored per batch
      element ``*B`` and dropped when the shape of ``[*B, D, K]`` changes; they may come
      from other logits (training steps): still unbiased, as the centring uses the
      current ``mu``, but fitted to an older ``f`` and ``p``. Reuse an instance only on
      the same problem (batch element ``b`` always the same problem).

    Scale: with ``memory > 0`` the correction is ``beta s`` with ``beta = clamp(sum_{m,d,k}
    u^m_dk v^m_dk / sum (v^m_dk)^2, 0, 1)`` per batch element, over earlier calls' rows
    (decayed like the rest), where ``u, v`` are ``y, s`` as they reach the gradient in the
    logits, ``p_dk (y_dk - sum_j p_dj y_dj)`` (shifts constant in ``k`` cancel there): the
    variance-minimising factor ``Cov(u, v) / Var(v)`` of a control variate with ``E[v] = 0``.
    A fit that is mostly noise (few rows against its ``D^2 K^2`` coefficients) is so turned
    down instead of adding variance; ``beta = 0`` on the first call. It depends on earlier
    calls only, so the estimate stays unbiased. Without memory ``beta = 1``.

    Exact in the limit of many fitting rows only where ``y_dk`` is additive in
    ``x_{!=d}`` (``f`` with pairwise interactions alone); otherwise it removes the
    additive part of each ``y_dk``, with estimation noise of order ``1 / sqrt(rows per
    category)``: it needs rows (``memory``) where ``K`` is large.

    Measured (``benchmarks/control_variates.py``, variance against plain IndeCateR(2) after
    100 calls of fitting, memory 0.9 / 0.99): 0.25 / 0.061 on a dense quadratic, 0.48 / 0.19
    on figure 1's ``f``, 0.36 / 0.074 on the binary problem (all below RLOO at equal
    evaluations); 0.99 / 1.00 on MNIST addition (``D = 4``; RLOO(74): 0.26), whose
    indicator of a sum is an interaction of order ``D - 1`` with a small additive part;
    1.15-1.19 on the DVAE encoder (``D = 200``, too few rows: use :class:`Taylor`).

    On an :class:`~catlog.Autoregressive`, SCateR calls :meth:`completions` instead: the
    interactions of ``x_d`` with the variables after it only, through each completion
    (measured on ``catlog compare``'s autoregressive problem, ``benchmarks/scater_control_variate.py``:
    0.63 / 0.54 of SCateR(2)'s variance with memory 0.9 / 0.99, against 0.72 for RLOO at equal
    evaluations and 0.33 for the best any such correction can reach).

    Cost: no evaluation of ``f`` (IndeCateR hands its rows, evaluated in one call: its
    ``chunk_size`` is not applied); ``O(N D^2 K^2)`` work and ``D^2 K^2`` numbers per
    batch element. Called directly without ``rows`` it evaluates them, ``N D K`` rows of
    ``f`` on one-hot floats.

    Args:
        leave_one_out: fit on this estimate's other samples (needs ``num_samples >= 2``).
        memory: decay of the statistics carried over from earlier calls, in ``[0, 1)``;
            ``0`` carries nothing.
        prior: ``lambda > 0``, the pseudo-observations at the overall mean.
    """

    def __init__(self, leave_one_out: bool = True, memory: float = 0.9, prior: float = 1.0) -> None:
        self.leave_one_out = check_flag("leave_one_out", leave_one_out)
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not 0 <= memory < 1:
            raise ValueError(f"memory: expected a number in [0, 1), got {memory!r}")
        if not leave_one_out and memory == 0:
            raise ValueError("memory: expected a number in (0, 1) with leave_one_out=False (nothing to fit on), got 0")
        self.memory = float(memory)
        self.prior = check_positive("prior", prior)
        self.statistics: FitStatistics | None = None

    def __repr__(self) -> str:
        return f"Fitted(leave_one_out={self.leave_one_out}, memory={self.memory}, prior={self.prior})"

    def check_num_samples(self, num_samples: int) -> None:
        """Refuse ``leave_one_out`` with fewer than two samples (no other sample to fit on)."""
        if self.leave_one_out and num_samples < 2:
            raise ValueError(
                "control_variate: Fitted(leave_one_out=True) fits each sample's coefficients on the other "
                f"samples and needs num_samples >= 2, got {num_samples}; use Fitted(leave_one_out=False) "
                "to fit on earlier calls only"
            )

    def __call__(
        self,
        f: RelaxedF,
        samples: torch.Tensor,
        logits: torch.Tensor,
        generator: torch.Generator | None,
        rows: torch.Tensor | None = None,
    ) -> Correction:
        """The correction for ``samples: LongTensor[N, *B, D]`` from ``rows: [N, *B, D, K]``,
        ``rows[n, ..., d, k] = f(x^n_{!=d}, k)`` (evaluated with ``f`` when not given)."""
        num_samples = samples.shape[0]
        self.check_num_samples(num_samples)
        probs = logits.detach().softmax(-1)
        one_hot = centred_one_hot(samples, probs) + probs
        if rows is None:
            rows = perturbed_values(f, one_hot)
        differences = rows.detach() - (rows.detach() * one_hot).sum(-1, keepdim=True)  # y^n_dk
        current = FitStatistics.of(differences, one_hot)
        carried = self._carried(current)
        fit = carried.plus(current) if self.leave_one_out else carried
        own = float(self.leave_one_out)  # sample n's own rows, to leave out of its fit
        centred = one_hot - probs
        weights = centred / (fit.counts.unsqueeze(0) - own * one_hot + self.prior)  # [N, *B, D, K]
        num_variables = samples.shape[-1]
        off_diagonal = ~torch.eye(num_variables, dtype=torch.bool, device=probs.device)
        sums = fit.sums * off_diagonal.view(num_variables, 1, num_variables, 1)
        totals = fit.totals.unsqueeze(0) - own * differences
        means = totals / (fit.weight - own).clamp_min(1e-12)
        # s^n_dk = sum_{e != d, j} (S_dkej + lambda ybar_dk) w^n_ej, S without sample n's own y^n_dk [x^n_e = j]
        corrections = (
            torch.einsum("...dkej,n...ej->n...dk", sums, weights)
            - own * differences * others((one_hot * weights).sum(-1)).unsqueeze(-1)
            + self.prior * means * others(weights.sum(-1)).unsqueeze(-1)
        )
        scale = self._scale_and_carry(carried, current, differences, corrections, probs)
        return Correction(scale * corrections.mean(0), probs.new_zeros(probs.shape[:-2]))

    def completions(
        self, coefficients: torch.Tensor, futures: torch.Tensor, future_probs: torch.Tensor, probs: torch.Tensor
    ) -> torch.Tensor:
        r"""SCateR's correction on an :class:`~catlog.Autoregressive`: rows ``s[n, *B, d, k]`` to
        subtract from its coefficients ``c_ndk = f(x^n_{<d}, k, x^{(n,k)}_{>d})`` in the score term.

        Only the completion ``x^{(n,k)}_{>d}``, drawn given the prefix and ``X_d = k``, may enter:
        the prefix ``x^n_{<d}`` is what ``grad p(k | x^n_{<d})`` depends on, so a term in it has
        no known expectation. Each later variable ``e`` enters centred by its own conditional
        probabilities along the completion, ``q_e = p(. | x^{(n,k)}_{<e})``:

        $$
        s_{ndk} = \sum_{e > d} \sum_j A^{(n)}_{dkej} \big([x^{(n,k)}_e = j] - q_{ej}\big),
        $$

        a sum of martingale differences, so ``E[s_ndk | x^n_{<d}, X_d = k] = 0`` for any ``A``
        that does not depend on this completion: unbiased. ``A^(n)_dkej`` is the shrunk
        conditional mean of ``c_dk`` given ``x^{(k)}_e = j`` over the fitting rows (as in
        :meth:`__call__`: the other samples with ``leave_one_out``, earlier calls with ``memory``,
        the scale ``beta`` likewise). It can remove no more than the variance of the completions:
        the floor is SCateR with ``c_ndk`` replaced by its exact conditional mean.

        Args:
            coefficients: ``c: [N, *B, D, K]`` (zero at impossible categories).
            futures: ``[N, *B, D, K, D, K]``, ``[x^{(n,k)}_e = j]`` at ``[n, b, d, k, e, j]``, zero
                for ``e <= d`` and impossible ``k``.
            future_probs: ``q`` in the same layout, zero where ``futures`` is.
            probs: ``p(k | x^n_{<d}): [N, *B, D, K]``.

        Returns:
            ``s: [N, *B, D, K]``, without autograd.
        """
        self.check_num_samples(coefficients.shape[0])
        values, possible = coefficients.detach(), (probs > 0).to(probs.dtype)
        current = FitStatistics(
            torch.einsum("n...dk,n...dkej->...dkej", values, futures),
            futures.sum(0),
            (values * possible).sum(0),
            torch.zeros_like(values[0]),
            torch.zeros_like(values[0]),
            possible.sum(0),
        )
        carried = self._carried(current)
        fit = carried.plus(current) if self.leave_one_out else carried
        own = float(self.leave_one_out)
        means = (fit.totals - own * values * possible) / (fit.weight - own * possible).clamp_min(1e-12)
        sums = fit.sums - own * values[..., None, None] * futures + self.prior * means[..., None, None]
        coefficients_a = sums / (fit.counts - own * futures + self.prior)
        corrections = (coefficients_a * (futures - future_probs)).sum((-2, -1))
        return self._scale_and_carry(carried, current, values, corrections, probs) * corrections

    def _carried(self, current: FitStatistics) -> FitStatistics:
        """The statistics carried from earlier calls, or none (zeros) where they are of another shape."""
        carried = self.statistics
        if carried is None or carried.counts.shape != current.counts.shape:
            return current.scaled(0.0)
        return carried

    def _scale_and_carry(
        self,
        carried: FitStatistics,
        current: FitStatistics,
        target: torch.Tensor,
        corrections: torch.Tensor,
        probs: torch.Tensor,
    ) -> torch.Tensor:
        """The scale ``beta: [*B, 1, 1]`` from the carried statistics (``1`` without memory), and the
        statistics carried to the next call: ``carried`` decayed plus ``current`` with the products of
        ``target`` and ``corrections: [N, *B, D, K]`` as they reach the gradient (``probs`` broadcast)."""
        if self.memory == 0:
            return torch.ones_like(corrections[0, ..., :1, :1])
        kept = carried.scaled(self.memory)
        products, squares = kept.products.sum((-2, -1), keepdim=True), kept.squares.sum((-2, -1), keepdim=True)
        self.statistics = kept.plus(current.agreeing(target, corrections, probs))
        return (products / squares.clamp_min(torch.finfo(probs.dtype).tiny)).clamp(0, 1)


class FitStatistics(NamedTuple):
    """The sufficient statistics of :class:`Fitted` over its fitting rows ``m``.

    Attributes:
        sums: ``[*B, D, K, D, K]``, ``S[d, k, e, j] = sum_m y^m_dk [x^m_e = j]``.
        counts: ``[*B, D, K]``, ``C[e, j] = sum_m [x^m_e = j]``.
        totals: ``[*B, D, K]``, ``T[d, k] = sum_m y^m_dk``.
        products, squares: ``[*B, D, K]``, ``sum_m y^m_dk s^m_dk`` and ``sum_m (s^m_dk)^2`` over
            the rows of earlier calls with their corrections ``s`` (for the scale ``beta``).
        weight: ``[]``, the number of rows (decayed sums).
    """

    sums: torch.Tensor
    counts: torch.Tensor
    totals: torch.Tensor
    products: torch.Tensor
    squares: torch.Tensor
    weight: torch.Tensor

    @staticmethod
    def of(differences: torch.Tensor, one_hot: torch.Tensor) -> FitStatistics:
        """The statistics of the rows ``y: [N, *B, D, K]`` at ``onehot(x): [N, *B, D, K]``."""
        sums = torch.einsum("n...dk,n...ej->...dkej", differences, one_hot)
        none = torch.zeros_like(differences[0])
        rows = one_hot.new_tensor(float(one_hot.shape[0]))
        return FitStatistics(sums, one_hot.sum(0), differences.sum(0), none, none, rows)

    def agreeing(self, differences: torch.Tensor, corrections: torch.Tensor, probs: torch.Tensor) -> FitStatistics:
        """These statistics with the products and squares of ``y, s: [N, *B, D, K]`` as they
        reach the gradient in the logits, ``p_dk (v_dk - sum_j p_dj v_dj)`` (``probs: [*B, D, K]``)."""
        target, correction = (
            (values - (values * probs).sum(-1, keepdim=True)) * probs for values in (differences, corrections)
        )
        return self._replace(products=(target * correction).sum(0), squares=correction.square().sum(0))

    def plus(self, other: FitStatistics) -> FitStatistics:
        """The statistics of both sets of rows."""
        return FitStatistics(*(mine + theirs for mine, theirs in zip(self, other, strict=True)))

    def scaled(self, factor: float) -> FitStatistics:
        """Every row's weight times ``factor``."""
        return FitStatistics(*(factor * value for value in self))


def others(values: torch.Tensor) -> torch.Tensor:
    """``sum_{e != d} v_e`` for every ``d``: ``[..., D] -> [..., D]``."""
    return values.sum(-1, keepdim=True) - values


def perturbed_values(f: RelaxedF, one_hot: torch.Tensor) -> torch.Tensor:
    """``f(x^n_{!=d}, k)`` for every sample, variable and category: ``[N, *B, D, K]`` from
    ``onehot(x): [N, *B, D, K]``, in one call of ``f`` on ``N D K`` rows, without autograd."""
    num_samples, num_variables, num_categories = one_hot.shape[0], *one_hot.shape[-2:]
    batch_shape = one_hot.shape[1:-2]
    variables = torch.eye(num_variables, dtype=torch.bool, device=one_hot.device)
    categories = torch.eye(num_categories, dtype=one_hot.dtype, device=one_hot.device)
    where = variables.view(num_variables, 1, *([1] * len(batch_shape)), num_variables, 1)
    rows = torch.where(  # [N, D, K, *B, D, K]: variable d of sample n set to category k
        where,
        categories.view(num_categories, *([1] * len(batch_shape)), 1, num_categories),
        one_hot.unsqueeze(1).unsqueeze(1),
    )
    with torch.no_grad():
        values = f(rows.flatten(0, 2)).view(num_samples, num_variables, num_categories, *batch_shape)
    return values.movedim((1, 2), (-2, -1))
