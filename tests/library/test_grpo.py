"""GRPO's group-normalised advantage: RLOO's weights divided by the group's standard deviation."""

from __future__ import annotations

import pytest
import torch

import catlog


def _gradient(estimator: catlog.Estimator, f, dist_of, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(7)).requires_grad_()
    value = estimator(f, dist_of(logits), generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad(value.sum(), logits)
    return value.detach(), grad


def _autoregressive(logits: torch.Tensor) -> catlog.Autoregressive:
    """A chain whose logits at ``d`` add the previous category's row of ``logits[..., d, :]``."""

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        previous = x[..., d - 1] if d else torch.zeros_like(x[..., 0])
        return logits[..., d, :] + 0.5 * torch.nn.functional.one_hot(previous, 5)

    return catlog.Autoregressive(conditional, 4, 5, (3,))


def _f(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.arange(1, 5)).sum(-1).float() ** 1.5


@pytest.mark.parametrize("dist_of", [lambda logits: logits, _autoregressive], ids=["independent", "autoregressive"])
def test_grpo_is_rloo_rescaled_by_the_group_standard_deviation(dist_of) -> None:
    num = 6
    grpo_value, grpo = _gradient(catlog.GRPO(num), _f, dist_of, seed=3)
    rloo_value, rloo = _gradient(catlog.RLOO(num), _f, dist_of, seed=3)
    # same generator, same samples: the values agree and the score terms differ by a per-element factor
    assert torch.allclose(grpo_value, rloo_value)
    values = _values(dist_of, num, seed=3)
    scale = (num - 1) / num / (values.std(0) + catlog.GRPO.epsilon)
    assert torch.allclose(grpo, rloo * scale[:, None, None], rtol=1e-4, atol=1e-6)


def _values(dist_of, num: int, seed: int) -> torch.Tensor:
    """``f`` at the samples RLOO(num) draws with ``seed``: ``[N, 3]``."""
    seen: list[torch.Tensor] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        seen.append(_f(x))
        return seen[-1]

    _gradient(catlog.RLOO(num), recording, dist_of, seed)
    return seen[0].detach()


def test_a_group_of_equal_values_gives_a_zero_gradient() -> None:
    _, grad = _gradient(catlog.GRPO(4), lambda x: torch.ones(x.shape[:-1]), lambda logits: logits, seed=0)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_grpo_needs_two_samples_and_costs_what_it_draws() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        catlog.GRPO(1)
    assert catlog.GRPO(5).cost(3, 4) == catlog.Cost(5, 5)
