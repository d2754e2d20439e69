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
from catlog._validation import check_count, check_flag

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
