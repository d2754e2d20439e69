"""The problems layer: every problem's gradients, batched or not, estimate its exact gradient."""

from __future__ import annotations

import math

import pytest
import torch

import catlog
from catlog.experiments import addition_model, dvae_model
from catlog.experiments.problems import Problem, addition, autoregressive, binary, dvae, figure1
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


def test_figure_2_exact_gradient_is_the_enumerated_one() -> None:
    problem = binary.figure2(5, 3, CPU, torch.float64)
    logits = binary.start_logits(5, 3)
    assert problem.exact is not None
    torch.testing.assert_close(problem.exact, catlog.exact_gradient(binary.objective, logits))
    assert float(binary.expected_value(torch.full((5, 2), -math.inf).index_fill(-1, torch.tensor([1]), 0.0))) == (
        pytest.approx(binary.OPTIMUM)
    )
