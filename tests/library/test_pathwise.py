"""IndeCateR's and SCateR's ``pathwise="all"``: the gradient reaching ``f``'s parameters through every row.

Unbiasedness against exact enumeration is checked with the other estimators in
``test_unbiased.py`` and ``test_scater.py``. Here: the logits' gradient and the value are
those of ``pathwise="samples"`` bit for bit (same generator); the variance on ``f``'s
parameters is lower; chunked evaluation recomputes ``f`` in the backward pass instead of
keeping its graph; properties (hypothesis) over shapes, masks, encodings and chunks.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import catlog
from helpers import assert_variance_smaller
from problems import Problem, ProblemMaker, binary_parametrised_f, mixed_cardinalities, parametrised_f
from test_properties import problems
from test_scater import causal_network

pytestmark = pytest.mark.usefixtures("one_thread")

# name: (problem, estimator for a pathwise mode, how many of the problem's last parameters are f's)
CASES = {
    "indecater": (parametrised_f, lambda pathwise: catlog.IndeCateR(2, pathwise=pathwise), 2),
    "indecater-chunked": (parametrised_f, lambda pathwise: catlog.IndeCateR(2, chunk_size=5, pathwise=pathwise), 2),
    "indecater-binary-per-variable": (
        binary_parametrised_f,
        lambda pathwise: catlog.IndeCateR(2, per_variable=True, pathwise=pathwise),
        2,
    ),
    "indecater-impossible-chunked": (
        mixed_cardinalities,
        lambda pathwise: catlog.IndeCateR(2, chunk_size=3, pathwise=pathwise),
        0,
    ),
    "scater": (causal_network, lambda pathwise: catlog.SCateR(2, pathwise=pathwise), 1),
    "scater-per-variable-chunked": (
        causal_network,
        lambda pathwise: catlog.SCateR(1, per_variable=True, chunk_size=5, pathwise=pathwise),
        1,
    ),
}


def value_and_gradients(
    make: ProblemMaker, estimator: catlog.Estimator, runs: int, seed: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The estimate ``[R, *B]`` of ``make(1, runs)`` drawn with ``seed`` and its gradient to every parameter."""
    problem: Problem = make(1, runs)
    value = estimator(problem.f, problem.logits, generator=torch.Generator().manual_seed(seed))
    return value.detach(), list(torch.autograd.grad(value.sum(), problem.params))


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_logits_gradient_are_those_of_samples_mode(name: str) -> None:
    """Only the gradient of ``f``'s parameters changes; the score part is the same, bit for bit."""
    make, build, num_f_parameters = CASES[name]
    value, grads = value_and_gradients(make, build("samples"), 3, seed=5)
    all_value, all_grads = value_and_gradients(make, build("all"), 3, seed=5)
    assert torch.equal(all_value, value)
    split = len(grads) - num_f_parameters
    for grad, all_grad in zip(grads[:split], all_grads[:split]):
        assert torch.equal(all_grad, grad)
    for grad, all_grad in zip(grads[split:], all_grads[split:]):
        assert not torch.equal(all_grad, grad)


def f_parameter_gradients(
    make: ProblemMaker, estimator: catlog.Estimator, num_f_parameters: int, runs: int, seed: int
) -> torch.Tensor:
    """``runs`` independent gradients ``[R, P_f]`` of ``f``'s own parameters, the problem's last
    ``num_f_parameters``."""
    _, grads = value_and_gradients(make, estimator, runs, seed)
    return torch.cat([g.flatten(1) for g in grads[len(grads) - num_f_parameters :]], 1)


# name: (problem, estimator for a pathwise mode, how many of the problem's last parameters are f's)
VARIANCE_CASES = {
    "parametrised_f": (parametrised_f, lambda pathwise: catlog.IndeCateR(1, pathwise=pathwise), 2),
    "binary_parametrised_f": (binary_parametrised_f, lambda pathwise: catlog.IndeCateR(2, pathwise=pathwise), 2),
    "causal_network": (causal_network, lambda pathwise: catlog.SCateR(1, pathwise=pathwise), 1),
}


@pytest.mark.parametrize("name", sorted(VARIANCE_CASES))
def test_all_rows_lower_the_variance_on_f_parameters(name: str) -> None:
    """Rao-Blackwellisation: each ``d``'s term of the ``"all"`` gradient is ``E[grad f(X) | X_{!=d}]``
    (SCateR: given the prefix and the noise after ``d``), so its variance cannot exceed that of
    ``grad f`` at the samples. One-sided z-test on 3000 independent estimates each (two seeds):
    it would pass with probability at most 1e-4 if the variance were not lower. At the seeds
    used the observed differences are 23 to 111 standard errors (variance ratios 0.29, 0.38
    and 0.35), so a false failure at other seeds has probability below 1e-50."""
    make, build, num_f_parameters = VARIANCE_CASES[name]
    ratio = assert_variance_smaller(
        f_parameter_gradients(make, build("all"), num_f_parameters, 3000, seed=1),
        f_parameter_gradients(make, build("samples"), num_f_parameters, 3000, seed=2),
    )
    assert ratio < 1.0


def test_chunked_all_rows_recompute_f_in_the_backward_pass() -> None:
    """With chunks, ``f``'s graph is not kept: the backward pass evaluates each chunk again
    (at most ``chunk_size`` rows per call), and without chunks it evaluates nothing."""
    num_samples, num_variables, num_categories, chunk_size = 2, 5, 3, 4
    weight = torch.randn(num_variables, num_categories, requires_grad=True)
    logits = torch.randn(num_variables, num_categories, requires_grad=True)
    rows: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        rows.append(x.shape[0])
        return torch.tanh(weight[torch.arange(num_variables), x].sum(-1))

    for chunk, recomputed in ((None, 0), (chunk_size, num_samples * num_variables * (num_categories - 1))):
        rows.clear()
        value = catlog.IndeCateR(num_samples, chunk_size=chunk, pathwise="all")(f, logits)
        forward = list(rows)
        value.backward()
        assert sum(forward) == catlog.IndeCateR(num_samples).cost(num_variables, num_categories).evaluations
        assert sum(rows[len(forward) :]) == recomputed
        assert max(rows[len(forward) :], default=0) <= chunk_size


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    num_samples=st.integers(1, 3),
    per_variable=st.booleans(),
    chunk_size=st.sampled_from([1, 3]),
    one_hot=st.booleans(),
    validate=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_all_rows_properties(
    data: st.DataObject,
    num_samples: int,
    per_variable: bool,
    chunk_size: int,
    one_hot: bool,
    validate: bool,
    seed: int,
) -> None:
    """Shapes, dtypes, finite gradients that are zero at impossible categories (``-inf``
    logits), in both pathwise modes and with or without chunks: chunking leaves every
    gradient unchanged, and ``"all"`` leaves the value and the logits' gradient unchanged (up to rounding)."""
    logits, impossible = data.draw(problems(st.integers(1, 4)))
    batch_shape, (num_variables, num_categories) = logits.shape[:-2], logits.shape[-2:]
    leaf = logits.requires_grad_(True)
    table = torch.randn(num_variables, num_categories, dtype=logits.dtype, requires_grad=True)
    never_possible = impossible.reshape(-1, num_variables, num_categories).all(0)

    def f(x: torch.Tensor) -> torch.Tensor:
        encoded = x if one_hot else torch.nn.functional.one_hot(x, num_categories).to(logits.dtype)
        return torch.tanh((encoded * table).sum((-2, -1)))

    results = {}
    for pathwise in ("samples", "all"):
        for chunk in (None, chunk_size):
            estimator = catlog.IndeCateR(
                num_samples, per_variable=per_variable, chunk_size=chunk, pathwise=pathwise, validate_args=validate
            )
            value = estimator(f, leaf, one_hot=one_hot, generator=torch.Generator().manual_seed(seed))
            assert value.shape == batch_shape and value.dtype == logits.dtype
            logits_grad, table_grad = torch.autograd.grad(value.sum(), (leaf, table))
            assert bool(torch.isfinite(logits_grad).all()) and bool((logits_grad[impossible] == 0).all())
            assert bool(torch.isfinite(table_grad).all()) and bool((table_grad[never_possible] == 0).all())
            results[pathwise, chunk] = value.detach(), logits_grad, table_grad
    for pathwise in ("samples", "all"):
        torch.testing.assert_close(results[pathwise, chunk_size], results[pathwise, None])
    for chunk in (None, chunk_size):  # equal up to rounding: for K = 2 "samples" takes the fused flip path
        torch.testing.assert_close(results["all", chunk][:2], results["samples", chunk][:2])


def test_all_rows_without_autograd_give_the_value() -> None:
    """Under ``torch.no_grad()`` nothing is recorded and the value is that of ``"samples"``."""
    logits = torch.randn(4, 3, 2, requires_grad=True)
    weight = torch.randn(2, requires_grad=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(weight[x].sum(-1))

    with torch.no_grad():
        values = [
            catlog.IndeCateR(2, chunk_size=2, pathwise=pathwise)(f, logits, generator=torch.Generator().manual_seed(0))
            for pathwise in ("samples", "all")
        ]
    assert not values[1].requires_grad and torch.equal(values[0], values[1])
