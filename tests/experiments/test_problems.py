"""The problems layer: every problem's gradients, batched or not, estimate its exact gradient."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import catlog
from catlog.experiments import addition_model, dvae_model, estimators
from catlog.experiments.problems import Problem, addition, autoregressive, binary, dvae, figure1, quadratic, structured
from helpers import assert_same_mean, assert_unbiased

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def small_problems() -> dict[str, Problem]:
    """One problem of every module at a small size, in float64."""
    torch.manual_seed(0)
    model = dvae_model.DiscreteVAE(num_latents=3).double()
    images = (torch.rand(2, dvae_model.IMAGE_DIM) < 0.3).double()
    classifier = addition_model.LeNet().double()
    return {
        "fig1": figure1.problem(3, 4, "nonseparable", 0, CPU, torch.float64),
        "hamming": binary.hamming(4, 0, CPU, torch.float64),
        "fig2": binary.figure2(5, 0, CPU, torch.float64),
        "autoregressive": autoregressive.problem(0, CPU, torch.float64, num_variables=3, num_categories=3),
        "dvae": dvae.problem(model, images),
        "addition": addition.through_classifier(classifier, torch.rand(2, 3, 28, 28).double(), torch.tensor([4, 20])),
    }


@pytest.mark.parametrize("name", list(small_problems()))
def test_gradients_have_one_entry_per_parameter_entry(name: str) -> None:
    problem = small_problems()[name]
    size = sum(parameter.numel() for parameter in problem.parameters)
    estimator = catlog.RLOO(4)
    gradients = problem.gradients(estimator, 3, torch.Generator().manual_seed(0))
    assert gradients.shape == (3, size) and problem.gradient(estimator).shape == (size,)
    assert problem.exact is None or problem.exact.shape == (size,)
    x = torch.randint(problem.num_categories, (2, *problem.batch_shape, problem.num_variables))
    assert problem.f(x).shape == (2, *problem.batch_shape)
    with pytest.raises(ValueError, match="^repeats: expected an integer >= 1, got 0"):
        problem.gradients(estimator, 0)


@pytest.mark.parametrize("name", ["fig1", "hamming", "fig2", "autoregressive"])
def test_batched_and_one_by_one_gradients_average_to_the_exact_gradient(name: str) -> None:
    problem = small_problems()[name]
    assert problem.batched is not None and problem.exact is not None
    estimator = catlog.RLOO(3)
    batched = problem.gradients(estimator, 3000, torch.Generator().manual_seed(1))
    one_by_one = torch.stack([problem.gradient(estimator, torch.Generator().manual_seed(2 + r)) for r in range(300)])
    assert_unbiased(batched, problem.exact)
    assert_same_mean(batched, one_by_one)


@functools.cache
def trained_structured(name: str) -> Problem:
    """A structured problem at its trained policy, ``K^D`` small: FrozenLake ``D = 6``, arithmetic ``D = 3``."""
    if name == "frozenlake":
        return structured.frozenlake(300, 0, CPU, torch.float64, horizon=6)
    return structured.arithmetic(300, 0, CPU, torch.float64, length=3)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [catlog.SCateR(2), catlog.RLOO(8)], ids=repr)
@pytest.mark.parametrize("name", ["frozenlake", "arithmetic"])
def test_structured_gradients_average_to_the_enumerated_gradient(name: str, estimator: catlog.Estimator) -> None:
    problem = trained_structured(name)
    assert problem.autoregressive and problem.batched is None and problem.exact is not None
    size = sum(parameter.numel() for parameter in problem.parameters)
    x = torch.randint(problem.num_categories, (5, *problem.batch_shape, problem.num_variables))
    assert problem.f(x).shape == (5, *problem.batch_shape) and problem.exact.shape == (size,)
    gradients = problem.gradients(estimator, 300, torch.Generator().manual_seed(3))
    assert gradients.shape == (300, size)
    # along the exact gradient and 3 random directions: sums over thousands of entries, near normal at R = 300,
    # where single entries of these sparse-reward gradients are too heavy-tailed for a z bound
    directions = torch.cat(
        [
            problem.exact[None] / problem.exact.norm(),
            torch.randn(3, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
        ]
    )
    assert_unbiased(gradients @ directions.T, directions @ problem.exact)


def test_structured_policies_are_trained_deterministically_until_they_succeed_sometimes() -> None:
    trained, again = trained_structured("arithmetic"), structured.arithmetic(300, 0, CPU, torch.float64, length=3)
    untrained = structured.arithmetic(0, 0, CPU, torch.float64, length=3)
    assert all(torch.equal(a, b) for a, b in zip(trained.parameters, again.parameters))
    assert not torch.equal(trained.parameters[0], untrained.parameters[0])
    with torch.no_grad():  # the mean over targets of E[f], by enumeration
        success, initial = (float(problem.loss(catlog.Exact(), None)) for problem in (trained, untrained))
    assert structured.TRAINED_SUCCESS - 0.05 < success < 0.6 and initial < 0.05
    assert (trained.name, untrained.name) == ("arithmetic-trained", "arithmetic")


def test_figure_2_exact_gradient_is_the_enumerated_one() -> None:
    problem = binary.figure2(5, 3, CPU, torch.float64)
    logits = binary.start_logits(5, 3)
    assert problem.exact is not None
    torch.testing.assert_close(problem.exact, catlog.exact_gradient(binary.objective, logits))
    assert float(binary.expected_value(torch.full((5, 2), -math.inf).index_fill(-1, torch.tensor([1]), 0.0))) == (
        pytest.approx(binary.OPTIMUM)
    )


def test_the_quadratic_problem_is_a_quadratic_form_with_an_enumerated_gradient() -> None:
    problem = quadratic.problem(3, 3, 0, CPU, torch.float64)
    assert problem.one_hot and problem.relaxable and problem.budget().one_hot
    one_hot = torch.nn.functional.one_hot
    a, b = (one_hot(torch.tensor(v), 3).double() for v in ([0, 1, 2], [2, 2, 0]))
    t = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0], dtype=torch.float64).view(-1, 1, 1)
    values = problem.f((1 - t) * a + t * b)  # a quadratic in t along a relaxed line
    assert abs(float(values[3] - 3 * values[2] + 3 * values[1] - values[0])) < 1e-12  # third difference
    for d, e in [(0, 1), (0, 2), (1, 2)]:  # every pair of variables interacts
        corners = torch.zeros(2, 2, 3, dtype=torch.long)
        corners[1, :, d], corners[:, 1, e] = 1, 1
        f = problem.f(one_hot(corners, 3).double())
        assert abs(float(f[1, 1] - f[1, 0] - f[0, 1] + f[0, 0])) > 1e-3
    rloo = problem.gradients(catlog.RLOO(4, one_hot=True), 4000, torch.Generator().manual_seed(1))
    assert_unbiased(rloo, problem.exact)


def test_taylor_is_exact_on_the_quadratic_problem() -> None:
    problem = quadratic.problem(6, 3, 0, CPU, torch.float64)
    family = estimators.FAMILIES["indecater-taylor"]
    grads = problem.gradients(family.build(2, problem.budget()), 50, torch.Generator().manual_seed(1))
    scale = float(problem.exact.square().sum())
    assert catlog.gradient_variance(grads) < 1e-20 * scale
    torch.testing.assert_close(grads.mean(0), problem.exact, rtol=1e-10, atol=1e-10)
    plain = problem.gradients(catlog.IndeCateR(2, one_hot=True), 50, torch.Generator().manual_seed(1))
    assert catlog.gradient_variance(plain) > 1e-3 * scale  # the problem does have variance to remove


@pytest.mark.parametrize("name", ["rebar", "relax"])
def test_fit_moves_a_learned_control_variate_and_leaves_others(name: str) -> None:
    problem = figure1.problem(3, 3, "nonseparable", 0, CPU, torch.float64)
    estimator = estimators.FAMILIES[name].build(2, problem.budget())
    before = [p.detach().clone() for p in estimator.parameters()]
    problem.fit(estimator, 3, torch.Generator().manual_seed(0))
    assert any(not torch.equal(p, q) for p, q in zip(estimator.parameters(), before, strict=True))


def test_fit_fills_a_carried_fitted_fit() -> None:
    problem = figure1.problem(3, 3, "nonseparable", 0, CPU, torch.float64)
    estimator = estimators.FAMILIES["indecater-fitted"].build(2, problem.budget())
    assert estimator.control_variate.statistics is None
    problem.fit(estimator, 2, torch.Generator().manual_seed(0))
    assert estimator.control_variate.statistics is not None
