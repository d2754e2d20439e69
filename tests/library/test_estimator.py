"""Exact cases worked out by hand, Gumbel-Softmax behaviour, reproducibility and costs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import catlog

SAMPLING = {
    "indecater": lambda: catlog.IndeCateR(3),
    "indecater-per-variable": lambda: catlog.IndeCateR(2, per_variable=True),
    "reinforce": lambda: catlog.REINFORCE(5),
    "rloo": lambda: catlog.RLOO(5),
    "gumbel-softmax": lambda: catlog.GumbelSoftmax(5),
    "gumbel-softmax-soft": lambda: catlog.GumbelSoftmax(5, temperature=0.5, straight_through=False),
    "reinmax": lambda: catlog.ReinMax(5, temperature=2.0),
    "gumbel-rao": lambda: catlog.GumbelRao(5, 4, temperature=0.5),
}


def test_exact_matches_a_hand_written_sum() -> None:
    logits = torch.randn(2, 3, dtype=torch.float64)
    table = torch.randn(3, 3, dtype=torch.float64)
    value = catlog.Exact()(lambda x: table[x[..., 0], x[..., 1]], logits)
    probs = logits.softmax(-1)
    expected = sum(probs[0, i] * probs[1, j] * table[i, j] for i in range(3) for j in range(3))
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("seed", range(3))
def test_indecater_with_one_variable_is_exact(seed: int) -> None:
    """Paper, end of section 4: for D = 1, eq. 4.1 is the exact gradient whatever the sample."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 1, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    scale = torch.randn(4, generator=generator, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(1.3 * x[..., 0]) * scale

    (exact_grad,) = torch.autograd.grad(catlog.Exact()(f, logits).sum(), logits)
    estimate = catlog.IndeCateR(1)(f, logits, generator=generator)
    (grad,) = torch.autograd.grad(estimate.sum(), logits)
    torch.testing.assert_close(grad, exact_grad, rtol=0, atol=1e-12)


def test_paper_example_4_2_by_hand() -> None:
    """Three 3-ary variables with values {1, 2, 3} (paper example 4.2), one sample.

    By eq. 4.5 with N = 1 the gradient for the logits theta_d of variable d is
    ``sum_k f(x with x_d = k) * d p_d(k) / d theta_d``, with the softmax Jacobian
    ``d p_d(k) / d theta_dj = p_d(k) (1[k = j] - p_d(j))``.
    """
    theta = torch.tensor([[0.2, -0.4, 1.0], [0.0, 0.7, -0.3], [-1.2, 0.5, 0.1]], dtype=torch.float64)
    theta.requires_grad_(True)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        value = x + 1  # categories 0, 1, 2 stand for the values 1, 2, 3
        return (value[..., 0] * value[..., 1] + value[..., 2] ** 2).double()

    estimate = catlog.IndeCateR(1)(f, theta, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(estimate, theta)
    sample = seen[0][0].tolist()  # the first call evaluates the drawn sample

    p = theta.detach().softmax(-1)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for d, k, j in itertools.product(range(3), range(3), range(3)):
        perturbed = list(sample)
        perturbed[d] = k
        value = (perturbed[0] + 1) * (perturbed[1] + 1) + (perturbed[2] + 1) ** 2
        expected[d, j] += value * p[d, k] * (float(k == j) - p[d, j])
    torch.testing.assert_close(grad, expected)
    # the value sums each X_d out in turn: 1/3 sum_d sum_k p_d(k) f(x with x_d = k)
    expected_value = 0.0
    for d, k in itertools.product(range(3), range(3)):
        perturbed = list(sample)
        perturbed[d] = k
        expected_value += p[d, k] * ((perturbed[0] + 1) * (perturbed[1] + 1) + (perturbed[2] + 1) ** 2) / 3
    torch.testing.assert_close(estimate.detach(), expected_value)


@pytest.mark.parametrize("name", sorted(SAMPLING))
def test_same_generator_same_estimate(name: str) -> None:
    logits = torch.randn(2, 3, 4, requires_grad=True)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        value = SAMPLING[name]()(lambda x: (x.float() ** 2).sum(-1), logits, generator=torch.Generator().manual_seed(5))
        return value.detach(), torch.autograd.grad(value.sum(), logits)[0]

    (value_a, grad_a), (value_b, grad_b) = run(), run()
    assert torch.equal(value_a, value_b) and torch.equal(grad_a, grad_b)


def test_generator_given_at_construction_is_used() -> None:
    logits = torch.randn(3, 5)
    f = lambda x: x.float().sum(-1)  # noqa: E731
    first = catlog.REINFORCE(4, generator=torch.Generator().manual_seed(1))(f, logits)
    second = catlog.REINFORCE(4)(f, logits, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second)


def test_gumbel_softmax_straight_through_forward_values_are_categories() -> None:
    logits = torch.randn(2, 4, 5, requires_grad=True)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return (x * torch.arange(1.0, 5.0)).sum(-1)

    value = catlog.GumbelSoftmax(6)(f, logits)
    (x,) = seen
    assert x.shape == (6, 2, 4) and x.dtype == logits.dtype and x.requires_grad
    assert torch.equal(x, x.round()) and bool(((x >= 0) & (x <= 4)).all())
    assert value.shape == (2,)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0


def test_gumbel_softmax_one_hot_and_soft_relaxation() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    seen: list[torch.Tensor] = []

    def f(y: torch.Tensor) -> torch.Tensor:
        seen.append(y)
        return (y[..., 0] * y[..., 1]).sum(-1)

    catlog.GumbelSoftmax(2, one_hot=True)(f, logits)
    catlog.GumbelSoftmax(2, temperature=2.0, straight_through=False, one_hot=True)(f, logits)
    hard, soft = seen
    assert hard.shape == soft.shape == (2, 3, 4)
    assert torch.equal(hard.sum(-1), torch.ones(2, 3)) and torch.equal(hard, hard.round())
    torch.testing.assert_close(soft.sum(-1), torch.ones(2, 3))
    assert bool(((soft > 0) & (soft < 1)).all())


def test_gumbel_softmax_temperature_can_be_annealed() -> None:
    estimator = catlog.GumbelSoftmax(1, temperature=1.0)
    estimator.temperature *= math.exp(-0.05)
    assert estimator.temperature == pytest.approx(math.exp(-0.05))
    with pytest.raises(ValueError, match="temperature"):
        estimator.temperature = 0.0


def test_pathwise_gradient_reaches_parameters_of_f() -> None:
    weight = torch.randn(3, requires_grad=True)
    logits = torch.randn(2, 3, 4)
    for make in SAMPLING.values():
        value = make()(lambda x: (x.to(weight.dtype) * weight).sum(-1), logits)
        (grad,) = torch.autograd.grad(value.sum(), weight)
        assert grad.abs().sum() > 0


def test_costs() -> None:
    assert catlog.IndeCateR(2).cost(200, 2) == catlog.Cost(samples=2, evaluations=2 * (1 + 200))
    assert catlog.IndeCateR(10, per_variable=True).cost(4, 10) == catlog.Cost(samples=40, evaluations=400)
    assert catlog.RLOO(800).cost(200, 2) == catlog.Cost(800, 800)
    assert catlog.REINFORCE(3).cost(5, 5) == catlog.Cost(3, 3)
    assert catlog.GumbelSoftmax(7).cost(5, 5) == catlog.Cost(7, 7)
    assert catlog.Exact().cost(3, 4) == catlog.Cost(0, 64)


@pytest.mark.parametrize("per_variable", [False, True])
def test_catlog_value_is_zero_only_with_a_zero_gradient(per_variable: bool) -> None:
    """A loss like ``-log(value + eps)`` must never see a zero value with a non-zero gradient.

    ``f`` is a rare indicator, so the drawn samples usually miss it while some perturbed
    row hits it: the plain sample mean would be 0 with a non-zero score term.
    """
    logits = torch.zeros(2, 4, 3, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0])
    nonzero = 0
    for seed in range(50):
        value = catlog.IndeCateR(1, per_variable=per_variable)(
            lambda x: (x == target).all(-1), logits, generator=torch.Generator().manual_seed(seed)
        )
        (grad,) = torch.autograd.grad(value.sum(), logits)
        hit = grad.abs().flatten(1).sum(1) > 0
        assert bool((value[hit] > 0).all())
        nonzero += int(hit.sum())
    assert nonzero > 0


@pytest.mark.parametrize("small", [False, True], ids=["large-path", "small-path"])
@pytest.mark.parametrize("num_categories", [2, 5])
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 4)])
def test_sum_by_category_equals_scatter(batch_shape, num_categories, small, monkeypatch) -> None:
    """Every path of ``sum_by_category`` (the ``K = 2`` product or ``einsum``; for larger ``K`` the
    one-hot sum) collects the same weights as the scatter, the size thresholds moved to take each."""
    from catlog import _surrogate
    from catlog._surrogate import scatter_by_category, sum_by_category

    monkeypatch.setattr(_surrogate, "CONTRACT_FROM_ELEMENTS", 10**9 if small else 0)
    monkeypatch.setattr(_surrogate, "ONE_HOT_BELOW_ENTRIES", 10**9 if small else 0)
    generator = torch.Generator().manual_seed(12)
    samples = torch.randint(num_categories, (5, *batch_shape, 7), generator=generator)
    weights = torch.randn(5, *batch_shape, generator=generator, dtype=torch.float64)
    scattered = scatter_by_category(
        torch.zeros(*batch_shape, 7, num_categories, dtype=torch.float64),
        torch.arange(7).repeat(5),
        samples.movedim(-1, 1).flatten(0, 1),
        weights.unsqueeze(-1).expand(samples.shape).movedim(-1, 1).flatten(0, 1),
    )
    collected = sum_by_category(samples, weights, num_categories)
    torch.testing.assert_close(collected, scattered, rtol=1e-13, atol=1e-13)
