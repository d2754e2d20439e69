"""Every unbiased estimator against exact enumeration, on every problem of ``problems.py``.

Each check compares the mean of ``RUNS`` independent estimates with the exact gradient
(and value) coordinate by coordinate, with tolerance ``z * SE`` where ``z`` is
Bonferroni-corrected for a joint false-failure rate of 1e-4 per check
(``helpers.z_bound``). Seeds are fixed.
"""

from __future__ import annotations

import pytest

import catlog
from helpers import assert_unbiased, total_variance
from problems import BINARY_PROBLEMS, PROBLEMS, estimates, exact

RUNS = 4000

UNBIASED = {
    "indecater": lambda: catlog.IndeCateR(2),
    "indecater-per-variable": lambda: catlog.IndeCateR(2, per_variable=True),
    "indecater-all-rows": lambda: catlog.IndeCateR(2, pathwise="all"),
    "indecater-all-rows-per-variable-chunked": lambda: catlog.IndeCateR(
        1, per_variable=True, chunk_size=2, pathwise="all"
    ),
    "reinforce": lambda: catlog.REINFORCE(4),
    "rloo": lambda: catlog.RLOO(4),
}


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(UNBIASED))
@pytest.mark.parametrize("seed", [1, 2])
def test_gradient_and_value_match_enumeration(name: str, make, seed: int) -> None:
    check_against_enumeration(UNBIASED[name](), make, seed)


def check_against_enumeration(estimator: catlog.Estimator, make, seed: int) -> None:
    """The mean of ``RUNS`` estimates of problem ``make(seed)`` against its exact gradient and value."""
    exact_value, exact_grad = exact(make, seed)
    values, grads = estimates(make, estimator, RUNS, seed, sample_seed=10 + seed)
    assert_unbiased(grads, exact_grad)
    assert_unbiased(values, exact_value)


BINARY = {**UNBIASED, "disarm": lambda: catlog.DisARM(2), "disarm-one-pair": lambda: catlog.DisARM(1)}


@pytest.mark.parametrize("make", BINARY_PROBLEMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("seed", [1, 2])
def test_binary_gradient_and_value_match_enumeration(name: str, make, seed: int) -> None:
    """Problems with ``K = 2``, where DisARM applies, for it and every other unbiased estimator."""
    check_against_enumeration(BINARY[name](), make, seed)


@pytest.mark.parametrize("make", PROBLEMS, ids=lambda p: p.__name__)
def test_indecater_variance_below_reinforce_and_rloo(make) -> None:
    variance = {
        type(estimator).__name__: total_variance(estimates(make, estimator, RUNS, seed=3, sample_seed=4)[1])
        for estimator in (catlog.IndeCateR(2), catlog.REINFORCE(2), catlog.RLOO(2))
    }
    assert variance["IndeCateR"] < variance["REINFORCE"], variance
    assert variance["IndeCateR"] < variance["RLOO"], variance


def test_gumbel_softmax_fails_the_unbiasedness_check() -> None:
    """The check has power: it rejects Gumbel-Softmax, which is biased on a nonlinear f."""
    make = PROBLEMS[0]
    _, exact_grad = exact(make, 1)
    _, grads = estimates(make, catlog.GumbelSoftmax(4), RUNS, 1, sample_seed=2)
    with pytest.raises(AssertionError):
        assert_unbiased(grads, exact_grad)
