"""DisARM: its antithetic pairs and its estimate worked out by hand from the recorded pairs.
Unbiasedness against exact enumeration is in ``test_unbiased.py`` (``BINARY_PROBLEMS``)."""

from __future__ import annotations

import itertools
import math

import torch

import catlog
from helpers import z_bound


def test_estimate_by_hand_from_the_recorded_pairs() -> None:
    """``g_d = 1/P sum_p 1/2 (f(b_p) - f(b~_p)) (-1)^{b~_pd} 1[b_pd != b~_pd] sigmoid(|alpha_d|)``
    reaches ``logit_d1`` as ``g_d`` and ``logit_d0`` as ``-g_d``; the value is the mean of ``f``."""
    logits = torch.tensor(
        [
            [[0.3, -0.4], [1.2, 0.1], [-math.inf, 0.5], [0.0, 0.0]],
            [[-0.7, 0.9], [0.2, -math.inf], [0.4, 0.4], [2.0, -1.0]],
        ],
        dtype=torch.float64,
        requires_grad=True,
    )
    weights = torch.tensor([0.5, -1.5, 2.0, 1.0], dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return torch.cos((x * weights).sum(-1)) + x[..., 0] * x[..., 3]

    num_pairs = 5
    value = catlog.DisARM(num_pairs, generator=torch.Generator().manual_seed(3))(f, logits)
    (grad,) = torch.autograd.grad(value.sum(), logits)

    (x,) = seen
    assert x.shape == (2 * num_pairs, 2, 4) and x.dtype == torch.long
    samples, antithetic = x[:num_pairs].tolist(), x[num_pairs:].tolist()

    def f_of(row: list[int]) -> float:
        return math.cos(sum(w * v for w, v in zip(weights.tolist(), row))) + row[0] * row[3]

    expected = torch.zeros(2, 4, 2, dtype=torch.float64)
    expected_value = [0.0, 0.0]
    for p, batch in itertools.product(range(num_pairs), range(2)):
        b, b_tilde = samples[p][batch], antithetic[p][batch]
        difference = f_of(b) - f_of(b_tilde)
        expected_value[batch] += (f_of(b) + f_of(b_tilde)) / (2 * num_pairs)
        for d in range(4):
            alpha = float(logits.detach()[batch, d, 1] - logits.detach()[batch, d, 0])
            if b[d] != b_tilde[d]:
                g = difference / 2 * (-1) ** b_tilde[d] / (1 + math.exp(-abs(alpha))) / num_pairs
                expected[batch, d, 1] += g
                expected[batch, d, 0] -= g
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(value.detach(), torch.tensor(expected_value, dtype=torch.float64))
    # one possible value: always that value, in both samples, and no gradient
    assert bool((x[:, 0, 2] == 1).all()) and bool((x[:, 1, 1] == 0).all())
    assert grad[0, 2].abs().sum() == 0 and grad[1, 1].abs().sum() == 0


def test_pairs_are_antithetic() -> None:
    """``b = 1[u < p]``, ``b~ = 1[1 - u < p]`` with ``p = sigmoid(alpha)``: each is a sample of
    ``Bernoulli(p)``, they are never both 0 when ``p > 1/2`` nor both 1 when ``p < 1/2``, and
    they differ with probability ``2 min(p, 1 - p)``; variables are independent."""
    logits = torch.tensor([[0.0, 1.3], [0.4, -0.6], [0.0, 0.0], [-2.5, 2.5], [0.0, -40.0], [30.0, -math.inf]])
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.sum(-1).float()

    num_pairs = 50_000
    catlog.DisARM(num_pairs, generator=torch.Generator().manual_seed(5))(f, logits)
    b, b_tilde = seen[0].unflatten(0, (2, num_pairs)).double()
    p = logits.double().softmax(-1)[:, 1]
    assert not bool(((b == 0) & (b_tilde == 0) & (p > 0.5)).any())
    assert not bool(((b == 1) & (b_tilde == 1) & (p < 0.5)).any())
    differ = torch.minimum(p, 1 - p) * 2
    frequencies = torch.stack([b.mean(0), b_tilde.mean(0), (b != b_tilde).double().mean(0)])
    expected = torch.stack([p, p, differ])
    tolerance = z_bound(expected.numel()) * (expected * (1 - expected) / num_pairs).sqrt() + 1e-12
    assert bool(((frequencies - expected).abs() <= tolerance).all()), (frequencies, expected)
    covariance = (b[:, 0] * b[:, 1]).mean() - b[:, 0].mean() * b[:, 1].mean()
    standard_error = float((p[0] * (1 - p[0]) * p[1] * (1 - p[1])).sqrt()) / math.sqrt(num_pairs)
    assert abs(float(covariance)) <= z_bound(1) * standard_error


def test_evaluates_its_cost_once_with_autograd_and_is_reproducible() -> None:
    rows: list[int] = []
    logits = torch.randn(3, 7, 2, requires_grad=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        assert torch.is_grad_enabled()
        rows.append(x.shape[0])
        return (x * torch.arange(7)).sum(-1).float()

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        value = catlog.DisARM(4, generator=torch.Generator().manual_seed(1))(f, logits)
        return value.detach(), torch.autograd.grad(value.sum(), logits)[0]

    (value_a, grad_a), (value_b, grad_b) = run(), run()
    assert torch.equal(value_a, value_b) and torch.equal(grad_a, grad_b)
    assert rows == [8, 8] and catlog.DisARM(4).cost(7, 2) == catlog.Cost(samples=8, evaluations=8)
    assert (
        repr(catlog.DisARM(4))
        == "DisARM(num_pairs=4, one_hot=False, generator=None, validate_args=None, chunk_size=None)"
    )


def test_pathwise_gradient_is_the_mean_over_both_samples() -> None:
    """``f``'s own parameters receive ``1/(2P) sum grad f`` over the ``2 P`` samples."""
    weight = torch.randn(5, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 5, 2, dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return torch.tanh((x * weight).sum(-1))

    value = catlog.DisARM(3)(f, logits)
    (grad,) = torch.autograd.grad(value.sum(), weight)
    (expected,) = torch.autograd.grad(f(seen[0]).sum() / 6, weight)
    torch.testing.assert_close(grad, expected)
