"""IndeCateR: the CatLog-Derivative trick for independent categorical variables (paper eq. 4.1)."""

from __future__ import annotations

import math

import torch

from catlog._binary import flip_means
from catlog._objective import Objective
from catlog._perturbation import category_means
from catlog._sampling import sample_by_inversion, sample_categorical
from catlog._surrogate import PATHWISE, Pathwise, catlog_estimate
from catlog._validation import check_choice, check_count, check_flag
from catlog.control_variates import ControlVariate, Taylor
from catlog.estimator import Cost, Estimator


class IndeCateR(Estimator):
    """The IndeCateR gradient estimator (paper eq. 4.1).

    ``grad E[f(X)] ~= sum_d sum_k grad p_d(k) * 1/N sum_n f(x_{!=d}^(n), k)``

    For every sample ``n``, variable ``d`` and possible category ``k``, ``f`` is
    evaluated on the sample with ``X_d`` set to ``k``. The row with ``k = x_d^(n)``
    is the sample itself, whose value is already known, so ``f`` runs on the
    ``N`` samples (with autograd, for the value and the pathwise term) plus
    ``N * sum_d (K_d - 1)`` perturbed rows (without autograd, as they only feed the
    stop-gradient coefficient, unless ``pathwise="all"``). Impossible categories
    (``-inf`` logits) are never handed to ``f``. The perturbed rows are built with
    tensor ops.

    The value returned is the Rao-Blackwellised estimate
    ``1/D sum_d sum_k p_d(k) c_dk`` of ``E[f]``, ``c_dk = 1/N sum_n f(x_{!=d}^(n), k)``
    (the surrogate of ``catlog._surrogate.catlog_estimate``): unbiased, with no more variance
    than the plain sample mean, and, for ``f >= 0``, zero only when the score term is
    zero too, so a loss such as ``-log(value)`` never divides a non-zero gradient by zero.

    With ``validate_args`` off and no chunks (or any chunks when ``K = 2``), an estimate
    makes no host synchronisation (it compiles with ``torch.compile(fullgraph=True)``);
    ``f`` is then evaluated on all ``N * D * (K - 1)`` perturbed rows whether or not some
    categories are impossible: a row that would hold an impossible category holds
    the sample itself and its value is discarded. With validation on (the default),
    the check of the logits tells whether every category is possible; if some are not,
    one more host synchronisation finds them and their rows are skipped.
    For ``K = 2`` with every category possible (or validation off) the perturbed row
    is the sample with one variable flipped, and a fused path builds and scores the
    rows in a handful of ops (:func:`catlog._binary.flip_means`).

    Samples are drawn by the Gumbel-max trick, except for ``K = 2``: there
    ``X_d = 1[U_d >= p_d(0)]`` with one uniform per variable, by inversion
    (:func:`catlog._sampling.sample_by_inversion`, as REINFORCE and RLOO draw), the same
    law with other draws for a given generator.

    Args:
        num_samples: ``N >= 1`` samples (per variable if ``per_variable``).
        per_variable: draw fresh samples ``x^(n_d)`` for every variable ``d`` (the
            paper's IndeCateR with sampling per variable, section 6.4): ``D * N``
            samples, the same number of evaluations.
        chunk_size: evaluate the perturbed rows at most this many rows (each holding
            the whole batch ``*B``) per call of ``f``, to bound peak memory; ``None``
            evaluates them in one call. The result does not depend on it.
        pathwise: the gradient reaching parameters that ``f`` uses (the value and the
            score term, the logits' gradient, are the same in both modes, up to rounding):

            - ``"samples"``: ``1/N sum_n grad f(x^(n))``, through the ``N`` samples only;
            - ``"all"``: the gradient of the Rao-Blackwellised value with ``p_d(k)``
              held constant, ``1/D sum_d sum_k p_d(k) grad c_dk``, through every
              perturbed row. Unbiased too, with no more variance (each ``d``'s term is
              ``E[grad f(X) | x_{!=d}]``): 0.28 to 0.42 times the variance of
              ``"samples"`` on the test problems with parameters in ``f``. Same
              evaluations (:meth:`cost`), but ``f``'s backward pass runs on all of them:
              on the DVAE step (``D = 200``, ``K = 2``, ``N = 2``, batch 100, one
              thread) 2.3-2.5x the CPU time of ``"samples"``, and a peak of 490-504 MiB
              against 434-452 MiB. With ``chunk_size`` the graph of ``f`` on the
              perturbed rows is not kept: each chunk is rebuilt and evaluated again in
              the backward pass (``torch.utils.checkpoint``), so peak memory stays
              that of a chunk (123 MiB at chunks of 50 there, against 70-83 MiB for
              ``"samples"``) for a second forward pass over the rows (3.1-4.4x the CPU
              time of chunked ``"samples"``; see ``docs/performance.md``).
        control_variate: ``None``, ``"taylor"`` (:class:`~catlog.control_variates.Taylor`: the
            mean Hessian of ``f`` at 4 extra draws) or a
            :class:`~catlog.control_variates.ControlVariate`: its rows are subtracted from the
            coefficients in the score term and its expectation's gradient added back
            (unbiased; the value is unchanged). Not with ``per_variable``. :meth:`cost` does
            not count its rows (``Taylor``: 4 rows, through a double backward pass). ``Taylor``
            calls ``torch.autograd.grad``, which ``torch.compile(fullgraph=True)`` refuses to trace.
        one_hot, generator, validate_args: see :class:`~catlog.estimator.Estimator`.
    """

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
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args)
        self.num_samples = check_count("num_samples", num_samples, 1)
        self.per_variable = check_flag("per_variable", per_variable)
        self.chunk_size = None if chunk_size is None else check_count("chunk_size", chunk_size, 1)
        self.pathwise = check_choice("pathwise", pathwise, PATHWISE)
        self.control_variate = control_variate
        self._control_variate = _resolve_control_variate(control_variate, self.num_samples, self.per_variable)

    def _cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples (``D * N`` per variable) and ``N * (1 + D * (K - 1))`` evaluations
        (``N * D * K`` per variable)."""
        groups = num_variables if self.per_variable else 1
        return Cost(
            samples=self.num_samples * groups,
            evaluations=self.num_samples * (groups + num_variables * (num_categories - 1)),
        )

    def _estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = logits.softmax(-1)
        num_variables, num_categories = logits.shape[-2:]
        groups = num_variables if self.per_variable else 1
        sample_shape = (self.num_samples, groups)
        if num_categories == 2:
            samples = sample_by_inversion(probs, sample_shape, generator)
        else:
            samples = sample_categorical(logits.detach().log_softmax(-1), sample_shape, generator)
        sample_values = objective(samples.flatten(0, 1))  # [N * G, *B]
        values = sample_values.reshape(samples.shape[:-1])
        possible = None if objective.every_possible else logits.detach() > -math.inf
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.pathwise == "all"):
            coefficients = self._coefficients(objective, samples, values, possible, num_categories)
        estimate = catlog_estimate(sample_values, probs, coefficients, self.pathwise)
        if self._control_variate is None or not (torch.is_grad_enabled() and logits.requires_grad):
            return estimate
        rows, expectation = self._control_variate(objective.relaxed_one_hot, samples[:, 0], logits, generator)
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
    if isinstance(resolved, Taylor):
        resolved.check_num_samples(num_samples)
    return resolved
