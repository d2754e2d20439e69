"""IndeCateR: the CatLog-Derivative trick for independent categorical variables (paper eq. 4.1)."""

from __future__ import annotations

import math

import torch

from catlog._binary import flip_means
from catlog._objective import Objective
from catlog._perturbation import category_means, sample_mean, sample_rows
from catlog._sampling import sample_by_inversion, sample_by_race
from catlog._surrogate import PATHWISE, Pathwise, catlog_estimate
from catlog._validation import Checked, check_choice, check_flag, check_samples
from catlog.control_variates import ControlVariate, Fitted, Taylor
from catlog.estimator import Cost, Estimator


class IndeCateR(Estimator):
    r"""IndeCateR: the CatLog-Derivative gradient estimator for independent variables (paper eq. 4.1).

    For ``D`` independent categorical variables with probabilities $p_d(k)$ (the
    softmax of the logits), the gradient of $\mathbb{E}_{X \sim p}[f(X)]$ is
    estimated by summing each variable out, given the others, on ``N`` samples:

    $$
    \nabla \mathbb{E}[f(X)] \approx \sum_{d=1}^{D} \sum_{k=1}^{K} \nabla p_d(k)\, c_{dk},
    \qquad c_{dk} = \frac{1}{N} \sum_{n=1}^{N} f\big(x^{(n)}_{\neq d}, k\big),
    \qquad x^{(n)} \sim p,
    $$

    where $(x^{(n)}_{\neq d}, k)$ is sample ``n`` with variable ``d`` set to category
    ``k``. The estimate is unbiased. The value returned is the Rao-Blackwellised
    estimate of $\mathbb{E}[f]$, $\frac{1}{D} \sum_d \sum_k p_d(k)\, c_{dk}$: unbiased,
    and for $f \ge 0$ zero only where the gradient is zero too, so that a loss such as
    ``-log(value)`` is safe. Its gradient is the estimate above for the logits, plus
    the pathwise term for parameters that ``f`` uses (see ``pathwise``).

    ``f`` is evaluated on the ``N`` samples (with autograd) and on the
    $N \sum_d (K_d - 1)$ rows that change one variable of a sample (without autograd,
    unless ``pathwise="all"``). Impossible categories (``-inf`` logits) are never
    handed to ``f``.

    Shapes:
        - dist: logits ``[*B, D, K]`` or a factorised categorical distribution
          (see :meth:`Estimator.__call__`).
        - f: ``LongTensor[M, *B, D] -> Tensor[M, *B]`` (one-hot ``[M, *B, D, K]`` with
          ``one_hot``); ``M`` is ``N`` for the samples and the number of changed
          rows (or ``chunk_size``) for the others.
        - returns: ``Tensor[*B]``.

    Cost:
        ``N`` samples and $N (1 + D (K - 1))$ evaluations of ``f`` per batch element;
        with ``per_variable``, $D N$ samples and $D N K$ evaluations (:meth:`cost`).

    Args:
        num_samples: ``N >= 1`` samples (per variable if ``per_variable``).
        per_variable: draw fresh samples for every variable ``d`` (the paper's
            IndeCateR with sampling per variable, section 6.4).
        chunk_size: hand ``f`` at most this many changed rows (each holding the whole
            batch ``*B``) per call, to bound peak memory; ``None``: all in one call.
            The result does not depend on it.
        pathwise: the gradient of parameters that ``f`` uses (the value and the
            logits' gradient are the same in both modes):

            - ``"samples"``: $\frac{1}{N} \sum_n \nabla f(x^{(n)})$, through the samples only;
            - ``"all"``: $\frac{1}{D} \sum_d \sum_k p_d(k)\, \nabla c_{dk}$, through every
              row: unbiased too, with less variance (0.28 to 0.42 times that of
              ``"samples"`` on our test problems) for a backward pass of ``f`` on every
              row (its time and memory: [docs/performance.md](performance.md)).
        control_variate: ``None``; ``"taylor"``, a :class:`~catlog.control_variates.Taylor`
            built from Hessian-vector products of ``f`` at 4 extra draws (``f`` must take
            float one-hot input); a :class:`~catlog.control_variates.Fitted`, fitted on every
            sample's rows (for ``f`` without relaxation; they are then evaluated in one call,
            without ``chunk_size``); or any :class:`~catlog.control_variates.ControlVariate`.
            Its rows $h_{dk}$ are subtracted from the coefficients of the score term and the
            gradient of its expectation is added back, so the estimate stays unbiased and
            the value is unchanged (see [control variates](control_variates.md)). Not with
            ``per_variable``; :meth:`cost` does not count its evaluations, and
            ``torch.compile(fullgraph=True)`` cannot trace ``"taylor"`` (it differentiates twice).
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.

    Raises:
        ValueError: for an argument out of its range (here or in the call: logits,
            ``f``'s output, a generator on another device).

    Examples:
        >>> import torch, catlog
        >>> logits = torch.zeros(3, 4, requires_grad=True)   # D = 3 variables, K = 4 categories
        >>> f = lambda x: (x == 1).sum(-1).float() ** 2      # x: [M, 3] -> [M]
        >>> value = catlog.IndeCateR(2)(f, logits)           # an estimate of E[f(X)], Tensor[]
        >>> value.backward()
        >>> logits.grad.shape
        torch.Size([3, 4])
        >>> catlog.IndeCateR(2).cost(3, 4)
        Cost(samples=2, evaluations=20)
    """

    num_samples = Checked(check_samples(1))

    def __init__(
        self,
        num_samples: int,
        *,
        per_variable: bool = False,
        chunk_size: int | None = None,
        pathwise: Pathwise = "samples",
        control_variate: ControlVariate | str | None = None,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_samples = num_samples
        self.per_variable = check_flag("per_variable", per_variable)
        self.pathwise = check_choice("pathwise", pathwise, PATHWISE)
        self.control_variate = control_variate
        self._control_variate = _resolve_control_variate(control_variate, self.num_samples, self.per_variable)

    def compute_cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples (``D * N`` per variable) and ``N * (1 + D * (K - 1))`` evaluations
        (``N * D * K`` per variable)."""
        groups = num_variables if self.per_variable else 1
        return Cost(
            samples=self.num_samples * groups,
            evaluations=self.num_samples * (groups + num_variables * (num_categories - 1)),
        )

    def estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = logits.softmax(-1)
        num_variables, num_categories = logits.shape[-2:]
        groups = num_variables if self.per_variable else 1
        sample_shape = (self.num_samples, groups)
        sample = sample_by_inversion if num_categories == 2 else sample_by_race
        samples = sample(probs, sample_shape, generator)
        # [N * G, *B]; checked to be finite with the rows' values, where the coefficients are computed
        sample_values = objective(samples.flatten(0, 1), check_finite=False)
        values = sample_values.reshape(samples.shape[:-1])
        possible = None if objective.every_possible else logits.detach() > -math.inf
        fitted = isinstance(self._control_variate, Fitted)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.pathwise == "all"):
            if fitted:  # it fits on every sample's rows
                per_sample = sample_rows(objective, samples, values, num_categories, possible)
                coefficients = sample_mean(per_sample)
            else:
                coefficients = self._coefficients(objective, samples, values, possible, num_categories)
        estimate = catlog_estimate(sample_values, probs, coefficients, self.pathwise)
        if self._control_variate is None or not (torch.is_grad_enabled() and logits.requires_grad):
            return estimate
        reuse = {"rows": per_sample} if fitted else {}  # Fitted fits on the rows already evaluated
        rows, expectation = self._control_variate(objective.relaxed_one_hot, samples[:, 0], logits, generator, **reuse)
        rows = rows.detach().masked_fill(logits.detach() == -math.inf, 0.0)  # 0 * NaN there would be NaN
        correction = expectation - (rows * probs).flatten(-2).sum(-1)
        return estimate + (correction - correction.detach())

    def _coefficients(
        self,
        objective: Objective,
        samples: torch.Tensor,
        values: torch.Tensor,
        possible: torch.Tensor | None,
        num_categories: int,
    ) -> torch.Tensor:
        """``c[b, d, k]`` (see :func:`~catlog._perturbation.category_means`; ``possible`` is ``None``
        when every category is known to be possible): for ``K = 2`` by flipping each variable
        (:func:`~catlog._binary.flip_means`), unless validation may skip impossible rows or the rows
        must carry autograd (``pathwise="all"``)."""
        binary = num_categories == 2 and not torch.is_grad_enabled()  # the rows carry no autograd
        if binary and (possible is None or not self._validates):
            return flip_means(objective, samples, values, possible, self.chunk_size)
        return category_means(objective, samples, values, possible, num_categories, self.chunk_size, self._validates)


def _resolve_control_variate(control_variate: object, num_samples: int, per_variable: bool) -> ControlVariate | None:
    """The control variate that ``control_variate`` names (``None``, ``"taylor"`` or one given), checked."""
    if control_variate is None:
        return None
    if per_variable:
        raise ValueError(
            "control_variate: expected None with per_variable=True (a control variate corrects shared samples), "
            f"got {control_variate!r}"
        )
    resolved = Taylor() if control_variate == "taylor" else control_variate
    if not isinstance(resolved, ControlVariate):
        raise ValueError(
            f"control_variate: expected None, 'taylor' or a catlog.ControlVariate (a callable "
            f"(f, samples, logits, generator) -> Correction), got {control_variate!r}"
        )
    if isinstance(resolved, (Taylor, Fitted)):
        resolved.check_num_samples(num_samples)
    return resolved
