"""Sampling by inversion (REINFORCE, RLOO) draws from Cat(probs) and never an impossible category."""

from __future__ import annotations

import math

import torch

from catlog._sampling import sample_by_inversion


def test_frequencies_match_probabilities_within_standard_errors():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=generator, dtype=torch.float64)
    logits[0, 1, [0, 3, 6]] = -math.inf
    probs = logits.softmax(-1)
    draws = 40_000
    samples = sample_by_inversion(probs, (100, draws // 100), generator)
    assert samples.shape == (100, draws // 100, 2, 3)
    frequencies = torch.nn.functional.one_hot(samples.flatten(0, 1), 7).double().mean(0)
    standard_error = (probs * (1 - probs) / draws).sqrt()
    # 42 cells, 5 standard errors each: a false alarm about once in 10^5 runs
    assert ((frequencies - probs).abs() <= 5 * standard_error + 1e-12).all()


def test_impossible_categories_are_never_drawn_even_at_the_top_of_the_unit_interval(monkeypatch):
    # float32 probabilities whose sums round; leading, inner and trailing impossible categories
    probs = torch.tensor([[0.0, 0.3, 0.0, 0.7, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0]])
    samples = sample_by_inversion(probs, (20_000,), torch.Generator().manual_seed(1))
    assert (probs.expand(20_000, 2, 6).gather(-1, samples.unsqueeze(-1)) > 0).all()

    largest_uniform = 1 - 2**-24  # the largest float32 below 1
    monkeypatch.setattr(
        torch, "rand", lambda shape, **kwargs: torch.full(shape, largest_uniform, dtype=kwargs["dtype"])
    )
    assert sample_by_inversion(probs, (1,), None).tolist() == [[3, 2]]
