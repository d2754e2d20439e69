"""The straight-through estimators (Gumbel-Softmax, ReinMax, Gumbel-Rao): ``f`` sees exact
samples, one call of ``N`` rows with autograd, as ``cost`` says."""

from __future__ import annotations

import pytest
import torch

import catlog

STRAIGHT_THROUGH = {
    "gumbel-softmax": lambda: catlog.GumbelSoftmax(6, temperature=0.5),
    "reinmax": lambda: catlog.ReinMax(6, temperature=2.0),
    "gumbel-rao": lambda: catlog.GumbelRao(6, 3, temperature=0.5),
}


@pytest.mark.parametrize("name", sorted(STRAIGHT_THROUGH))
def test_forward_values_are_exact_samples(name: str) -> None:
    logits = torch.randn(2, 4, 5)
    logits[1, 2, :3] = -float("inf")
    logits.requires_grad_(True)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        assert torch.is_grad_enabled()
        seen.append(x)
        return (x * torch.arange(1.0, 6.0)).sum((-2, -1)) if x.ndim == 4 else (x**2).sum(-1)

    estimator = STRAIGHT_THROUGH[name]()
    value = estimator(f, logits)
    estimator(f, logits, one_hot=True)
    values, one_hot = seen
    assert values.shape == (6, 2, 4) and values.requires_grad and torch.equal(values, values.round())
    assert bool(((values >= 0) & (values <= 4)).all()) and bool((values[:, 1, 2] >= 3).all())
    assert one_hot.shape == (6, 2, 4, 5) and one_hot.requires_grad
    assert torch.equal(one_hot, torch.nn.functional.one_hot(one_hot.argmax(-1), 5).float())
    assert estimator.cost(4, 5) == catlog.Cost(samples=6, evaluations=6)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert bool(torch.isfinite(grad).all()) and bool((grad[1, 2, :3] == 0).all()) and grad.abs().sum() > 0


def test_reprs() -> None:
    assert repr(catlog.ReinMax(4, temperature=1.5)) == (
        "ReinMax(num_samples=4, temperature=1.5, one_hot=False, generator=None, validate_args=None, chunk_size=None)"
    )
    assert repr(catlog.GumbelRao(5, 7)) == (
        "GumbelRao(num_samples=5, num_rao_samples=7, temperature=1.0, "
        "one_hot=False, generator=None, validate_args=None, chunk_size=None)"
    )


@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_binary_gumbel_softmax_has_the_law_of_the_general_one(temperature: float) -> None:
    """For ``K = 2`` the relaxed sample comes from logistic noise; its first two moments and
    the hard sample's mean match ``softmax((log p + G) / temperature)`` with Gumbel ``G``."""
    from catlog._sampling import gumbel_noise

    runs = 200_000
    logits = torch.tensor([[0.3, -0.4], [1.5, 0.2], [-2.0, 0.0]], dtype=torch.float64)
    soft = catlog.GumbelSoftmax(runs, temperature, straight_through=False, generator=torch.Generator().manual_seed(1))
    binary = []
    soft(lambda y: binary.append(y.detach()) or y.sum(-1), logits)
    noise = gumbel_noise((runs, *logits.shape), logits, torch.Generator().manual_seed(2))
    general = ((logits.log_softmax(-1) + noise) / temperature).softmax(-1)[..., 1]
    for moment in (1, 2):
        a, b = binary[0] ** moment, general**moment
        error = ((a.var(0) + b.var(0)) / runs).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() < 4.5 * error).all(), (a.mean(0), b.mean(0), error)
    hard = []
    straight = catlog.GumbelSoftmax(runs, temperature, generator=torch.Generator().manual_seed(3))
    straight(lambda y: hard.append(y.detach()) or y.sum(-1), logits)
    p = logits.softmax(-1)[:, 1]
    assert ((hard[0].mean(0) - p).abs() < 4.5 * (p * (1 - p) / runs).sqrt()).all()


@pytest.mark.parametrize("temperature", [0.3, 2.0])
def test_gumbel_softmax_has_its_law_at_three_categories(temperature: float) -> None:
    """At ``K = 3`` the relaxed one-hot sample is ``softmax((log p + G) / temperature)`` with Gumbel ``G``:
    its first two moments per category match those of that formula, drawn here from other noise."""
    from catlog._sampling import gumbel_noise

    runs = 200_000
    logits = torch.tensor([[0.3, -0.4, 1.0], [1.5, 0.2, -1.0]], dtype=torch.float64)
    seen = []
    soft = catlog.GumbelSoftmax(runs, temperature, straight_through=False, generator=torch.Generator().manual_seed(1))
    soft(lambda y: seen.append(y.detach()) or y.sum((-2, -1)), logits, one_hot=True)
    noise = gumbel_noise((runs, *logits.shape), logits, torch.Generator().manual_seed(2))
    law = ((logits.log_softmax(-1) + noise) / temperature).softmax(-1)
    for moment in (1, 2):
        a, b = seen[0] ** moment, law**moment
        error = ((a.var(0) + b.var(0)) / runs).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() < 4.5 * error).all(), (moment, a.mean(0), b.mean(0), error)
