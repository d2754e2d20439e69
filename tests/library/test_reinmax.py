"""ReinMax: exact forward samples and its second-order backward pass, worked out by hand
from the defining equations (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import catlog
from helpers import z_bound


def reinmax_jacobian(theta: list[float], sample: int, temperature: float) -> list[list[float]]:
    """``d pi2_k / d theta_j = 2 pi1_k (1[k = j] - pi1_j) - pi0_k (1[k = j] - pi0_j) / 2`` for one
    variable, with ``pi0 = softmax(theta)`` and ``pi1 = (onehot(sample) + softmax(theta / temperature)) / 2``
    (``-inf`` in ``theta`` gives probability 0)."""

    def softmax(values: list[float]) -> list[float]:
        top = max(values)
        weights = [math.exp(v - top) for v in values]
        return [w / sum(weights) for w in weights]

    pi0 = softmax(theta)
    tempered = softmax([t / temperature for t in theta])
    pi1 = [(float(k == sample) + tempered[k]) / 2 for k in range(len(theta))]
    size = range(len(theta))
    return [[2 * pi1[k] * (float(k == j) - pi1[j]) - pi0[k] * (float(k == j) - pi0[j]) / 2 for j in size] for k in size]


@pytest.mark.parametrize("one_hot", [True, False], ids=["one-hot", "values"])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_gradient_by_hand(temperature: float, one_hot: bool) -> None:
    """``grad theta_d = 1/N sum_n J_d(y_nd)^T df/dy_nd`` with ``J`` from :func:`reinmax_jacobian`;
    ``f(y) = sum W y + (sum V y)^2``, so ``df/dy_dk = W_dk + 2 (V . y) V_dk`` (with category
    values ``v_d = sum_k k y_dk``, ``f(v) = w . v + (u . v)^2`` and ``df/dy_dk = k df/dv_d``)."""
    theta = torch.tensor([[0.3, -1.1, 0.9, 0.0], [1.5, -math.inf, -0.2, 0.4]], dtype=torch.float64)
    theta.requires_grad_(True)
    W, V = (
        torch.tensor([[0.5, -1.0, 2.0, 0.3], [1.2, 0.0, -0.7, 0.9]], dtype=torch.float64),
        torch.tensor([[0.2, 0.4, -0.3, 1.0], [-0.5, 0.0, 0.8, 0.1]], dtype=torch.float64),
    )
    w, u = torch.tensor([0.7, -1.3], dtype=torch.float64), torch.tensor([0.4, 0.6], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def f(y: torch.Tensor) -> torch.Tensor:
        seen.append(y.detach())
        if one_hot:
            return (W * y).sum((-2, -1)) + (V * y).sum((-2, -1)) ** 2
        return (w * y).sum(-1) + (u * y).sum(-1) ** 2

    num_samples = 3
    estimator = catlog.ReinMax(num_samples, temperature, one_hot=one_hot, generator=torch.Generator().manual_seed(4))
    (grad,) = torch.autograd.grad(estimator(f, theta), theta)

    (x,) = seen
    samples = (x.argmax(-1) if one_hot else x.long()).tolist()
    expected = torch.zeros(2, 4, dtype=torch.float64)
    for n, d in itertools.product(range(num_samples), range(2)):
        sample = samples[n]
        if one_hot:
            dot = sum(float(V[e, sample[e]]) for e in range(2))
            df_dy = [float(W[d, k]) + 2 * dot * float(V[d, k]) for k in range(4)]
        else:
            dot = sum(float(u[e]) * sample[e] for e in range(2))
            df_dy = [k * (float(w[d]) + 2 * dot * float(u[d])) for k in range(4)]
        jacobian = reinmax_jacobian(theta[d].tolist(), sample[d], temperature)
        for k, j in itertools.product(range(4), range(4)):
            expected[d, j] += jacobian[k][j] * df_dy[k] / num_samples
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert grad[1, 1] == 0 and all(sample[1] != 1 for sample in samples)


def test_samples_follow_the_distribution() -> None:
    """Forward samples are draws of ``Cat(softmax(theta))``: frequencies within ``z`` standard errors."""
    logits = torch.tensor([[0.5, -1.0, 1.5, -math.inf]], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def f(y: torch.Tensor) -> torch.Tensor:
        seen.append(y.detach())
        return y.sum((-2, -1))

    catlog.ReinMax(40_000, one_hot=True)(f, logits)
    frequency, probs = seen[0].mean(0)[0], logits.softmax(-1)[0]
    tolerance = z_bound(4) * (probs * (1 - probs) / 40_000).sqrt() + 1e-12
    assert bool(((frequency - probs).abs() <= tolerance).all()), (frequency, probs)
