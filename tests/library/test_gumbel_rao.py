"""Gumbel-Rao: its conditional noise, its gradient against a quadrature, and against
straight-through Gumbel-Softmax (same distribution with one Rao sample, same mean and no
more variance with more). Statistical checks use fixed seeds and fail with probability at
most 1e-4 each when the property holds (``helpers.z_bound``)."""

from __future__ import annotations

import math

import pytest
import torch

import catlog
from catlog._sampling import sample_by_inversion
from catlog.gumbel_rao import conditional_gumbel
from helpers import assert_same_mean, assert_same_variance, assert_variance_not_larger, z_bound
from problems import estimates, nonseparable, smooth_decoder

RUNS = 4000


def test_conditional_noise_makes_the_given_category_the_argmax() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    logits[0, 1, 2:] = -math.inf
    logits[2, 3, 0] = -math.inf
    hard = sample_by_inversion(logits.softmax(-1), (6,), generator)
    noise = conditional_gumbel(logits, hard, 7, generator)
    assert noise.shape == (5, 7, 6, 3, 4) and bool(torch.isfinite(noise).all())
    perturbed = logits.movedim(-1, 0)[:, None, None] + noise
    assert torch.equal(perturbed.argmax(0), hard.expand(7, *hard.shape))
    assert bool((noise.movedim(0, -1)[:, :, 0, 1, 2:] == 0).all())


@pytest.mark.parametrize("category", [0, 1, 2])
def test_conditional_noise_matches_rejection_sampling(category: int) -> None:
    """``logits + G`` given the argmax, against unconditional draws whose argmax is ``category``:
    the same mean and variance in every coordinate."""
    logits = torch.tensor([[0.8, -0.5, 0.1]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(1 + category)
    uniform = torch.rand(200_000, 1, 3, generator=generator, dtype=torch.float64)
    unconditional = logits - (-uniform.log()).log()
    accepted = unconditional[unconditional.argmax(-1)[:, 0] == category][:, 0]
    hard = torch.full((accepted.shape[0], 1), category)
    conditional = (logits.movedim(-1, 0)[:, None, None] + conditional_gumbel(logits, hard, 1, generator))[:, 0, :, 0].T
    assert_same_mean(conditional, accepted)
    assert_same_variance(conditional, accepted)


def conditional_mean_of_relaxed_jacobian(alpha: float, category: int, temperature: float) -> float:
    """``E[s_1 s_0 | y]`` for ``K = 2`` by quadrature, ``s = softmax((theta + G) / temperature)``.

    ``L = (theta_1 + G_1) - (theta_0 + G_0)`` is logistic around ``alpha = theta_1 - theta_0``;
    ``y = 1[L > 0]`` and ``s_1 = sigmoid(L / temperature)``.
    """
    grid = torch.linspace(-80, 80, 400_001, dtype=torch.float64)
    density = torch.sigmoid(grid - alpha) * torch.sigmoid(alpha - grid)
    inside = (grid > 0) if category == 1 else (grid < 0)
    weight = torch.sigmoid(grid / temperature) * torch.sigmoid(-grid / temperature)
    return float(torch.trapezoid(weight * density * inside, grid) / torch.trapezoid(density * inside, grid))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_binary_gradient_is_the_conditional_expectation(temperature: float) -> None:
    """For ``K = 2`` and ``f = w . y`` the gradient is ``(w_1 - w_0) E[s_1 s_0 | y] / temperature``
    for ``theta_1`` (its negative for ``theta_0``): the Rao-Blackwellised straight-through term,
    here within Monte-Carlo error of ``R = 20000`` noise draws (``0 <= s_1 s_0 <= 1/4``)."""
    alphas = torch.tensor([-2.0, -0.3, 0.0, 0.7, 3.0], dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(alphas), alphas], -1).unsqueeze(1).requires_grad_(True)  # [5, 1, 2]
    weights = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def f(y: torch.Tensor) -> torch.Tensor:
        seen.append(y.detach())
        return (y * weights).sum((-2, -1))

    estimator = catlog.GumbelRao(1, 20_000, temperature, one_hot=True, generator=torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(estimator(f, logits).sum(), logits)
    categories = seen[0][0, :, 0].argmax(-1).tolist()
    expected = (
        torch.tensor(
            [conditional_mean_of_relaxed_jacobian(float(a), k, temperature) for a, k in zip(alphas, categories)],
            dtype=torch.float64,
        )
        * float(weights[0, 1] - weights[0, 0])
        / temperature
    )
    tolerance = z_bound(alphas.numel()) * float(weights[0, 1] - weights[0, 0]) / temperature / 8 / math.sqrt(20_000)
    torch.testing.assert_close(grad[:, 0, 1], expected, rtol=0, atol=tolerance)
    torch.testing.assert_close(grad[:, 0, 0], -grad[:, 0, 1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [nonseparable, smooth_decoder], ids=lambda p: p.__name__)
def test_one_rao_sample_has_the_distribution_of_straight_through_gumbel_softmax(make) -> None:
    """With ``R = 1``, ``(y, G)`` has the joint law of the Gumbel-max sample and its noise."""
    values_rao, grads_rao = estimates(make, catlog.GumbelRao(3, 1, temperature=0.7), RUNS, seed=1, sample_seed=2)
    values_st, grads_st = estimates(make, catlog.GumbelSoftmax(3, temperature=0.7), RUNS, seed=1, sample_seed=3)
    for rao, straight_through in ((grads_rao, grads_st), (values_rao, values_st)):
        assert_same_mean(rao, straight_through)
        assert_same_variance(rao, straight_through)


@pytest.mark.parametrize("make", [nonseparable, smooth_decoder], ids=lambda p: p.__name__)
def test_rao_samples_keep_the_mean_and_do_not_raise_the_variance(make) -> None:
    """Rao-Blackwellisation: the mean of straight-through Gumbel-Softmax's gradient, and no
    more variance (total and per coordinate). The variance check has power: it tells the
    two apart."""
    _, grads_rao = estimates(make, catlog.GumbelRao(3, 10, temperature=0.7), RUNS, seed=1, sample_seed=2)
    _, grads_st = estimates(make, catlog.GumbelSoftmax(3, temperature=0.7), RUNS, seed=1, sample_seed=3)
    assert_same_mean(grads_rao, grads_st)
    ratio = assert_variance_not_larger(grads_rao, grads_st)
    assert ratio < 1, ratio
    with pytest.raises(AssertionError, match="means differ"):
        assert_same_variance(grads_rao, grads_st)
