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
        "ReinMax(num_samples=4, temperature=1.5, one_hot=False, generator=None, validate_args=None)"
    )
    assert repr(catlog.GumbelRao(5, 7)) == (
        "GumbelRao(num_samples=5, num_rao_samples=7, temperature=1.0, "
        "one_hot=False, generator=None, validate_args=None)"
    )
