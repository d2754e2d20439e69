"""``chunk_size`` on every estimator: ``f`` sees at most ``chunk_size`` rows per call, and the value and the
gradients (to the logits and to ``f``'s parameters) equal those without chunks for the same generator."""

from __future__ import annotations

import math

import pytest
import torch

import catlog

MAKERS = {
    "reinforce": lambda chunk: catlog.REINFORCE(7, chunk_size=chunk),
    "rloo": lambda chunk: catlog.RLOO(7, chunk_size=chunk),
    "gumbel-softmax": lambda chunk: catlog.GumbelSoftmax(7, chunk_size=chunk),
    "gumbel-softmax-soft": lambda chunk: catlog.GumbelSoftmax(7, straight_through=False, chunk_size=chunk),
    "reinmax": lambda chunk: catlog.ReinMax(7, chunk_size=chunk),
    "gumbel-rao": lambda chunk: catlog.GumbelRao(7, 3, chunk_size=chunk),
    "disarm": lambda chunk: catlog.DisARM(4, chunk_size=chunk),
    "exact": lambda chunk: catlog.Exact(chunk_size=chunk),
    "indecater": lambda chunk: catlog.IndeCateR(5, chunk_size=chunk),
    "scater": lambda chunk: catlog.SCateR(5, chunk_size=chunk),
    "indecater-taylor": lambda chunk: catlog.IndeCateR(5, control_variate="taylor", chunk_size=chunk),
    "rebar": lambda chunk: catlog.REBAR(7, chunk_size=chunk),
    "relax": lambda chunk: catlog.RELAX(7, lambda z: z.flatten(-2).sum(-1).sin(), chunk_size=chunk),
}


def run(name: str, chunk: int | None, one_hot: bool) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows per call of ``f``, the value, and the gradients of the logits and of ``f``'s weights."""
    generator = torch.Generator().manual_seed(0)
    num_categories = 2 if name == "disarm" else 3
    logits = torch.randn(4, 5, num_categories, generator=generator).requires_grad_()
    weight = torch.randn(5 * num_categories if one_hot else 5, generator=generator).requires_grad_()
    rows: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        rows.append(x.shape[0])
        inputs = x.flatten(-2) if one_hot else x.to(weight.dtype)
        return torch.tanh(inputs @ weight)

    estimator = MAKERS[name](chunk)
    draws = {} if name == "exact" else {"generator": torch.Generator().manual_seed(1)}
    value = estimator(f, logits, one_hot=one_hot, **draws)
    value.sum().backward()
    assert logits.grad is not None and weight.grad is not None
    return rows, value.detach(), logits.grad, weight.grad


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_chunks_bound_rows_per_call_and_leave_the_estimate_unchanged(name: str, one_hot: bool) -> None:
    whole_rows, *whole = run(name, None, one_hot)
    chunked_rows, *chunked = run(name, 2, one_hot)
    assert max(chunked_rows) <= 2 < max(whole_rows)
    for got, expected in zip(chunked, whole):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_chunk_size_is_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1, got 0"):
        catlog.RLOO(2, chunk_size=0)
    assert not math.isnan(float(catlog.RLOO(2, chunk_size=1)(lambda x: x.sum(-1).float(), torch.zeros(3, 2))))
