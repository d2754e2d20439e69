"""Sampling by inversion (REINFORCE, RLOO; IndeCateR at K = 2) and by an exponential race (IndeCateR at
K > 2) draws from Cat(probs), never an impossible category."""

from __future__ import annotations

import math

import pytest
import torch

from catlog._sampling import COMPARE_MAX_CATEGORIES, OPAQUE_MIN_DRAWS, sample_by_inversion, sample_by_race, uniform

# K on each side of the switch from comparing with every F_k to a binary search
BOTH_PATHS = pytest.mark.parametrize("num_categories", [7, COMPARE_MAX_CATEGORIES + 3])


@BOTH_PATHS
def test_frequencies_match_probabilities_within_standard_errors(num_categories: int):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, num_categories, generator=generator, dtype=torch.float64)
    logits[0, 1, [0, 3, num_categories - 1]] = -math.inf
    probs = logits.softmax(-1)
    draws = 40_000
    samples = sample_by_inversion(probs, (100, draws // 100), generator)
    assert samples.shape == (100, draws // 100, 2, 3)
    frequencies = torch.nn.functional.one_hot(samples.flatten(0, 1), num_categories).double().mean(0)
    standard_error = (probs * (1 - probs) / draws).sqrt()
    # 6 K cells, 5 standard errors each: a false alarm about once in 10^4 runs
    assert ((frequencies - probs).abs() <= 5 * standard_error + 1e-12).all()


@BOTH_PATHS
def test_impossible_categories_are_never_drawn_even_at_the_top_of_the_unit_interval(monkeypatch, num_categories: int):
    # float32 probabilities whose sums round; leading, inner and trailing impossible categories
    probs = torch.zeros(2, num_categories)
    probs[0, [1, 3]] = torch.tensor([0.3, 0.7])
    probs[1, :3] = 1 / 3
    samples = sample_by_inversion(probs, (20_000,), torch.Generator().manual_seed(1))
    assert (probs.expand(20_000, 2, num_categories).gather(-1, samples.unsqueeze(-1)) > 0).all()

    largest_uniform = 1 - 2**-24  # the largest float32 below 1
    monkeypatch.setattr(
        torch, "rand", lambda shape, **kwargs: torch.full(shape, largest_uniform, dtype=kwargs["dtype"])
    )
    assert sample_by_inversion(probs, (1,), None).tolist() == [[3, 2]]


def test_binary_frequencies_match_probabilities_and_certain_categories_are_certain(monkeypatch):
    """``K = 2`` compares one uniform with a threshold per variable."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    logits[0, 0, 0] = logits[1, 2, 1] = -math.inf  # p_1 = 1 and p_1 = 0 exactly
    probs = logits.softmax(-1)
    probs_one = probs[..., 1]
    draws = 40_000
    samples = sample_by_inversion(probs, (100, draws // 100), generator)
    assert samples.shape == (100, draws // 100, 3, 4) and samples.dtype == torch.long
    frequencies = samples.flatten(0, 1).double().mean(0)
    standard_error = (probs_one * (1 - probs_one) / draws).sqrt()
    # 12 cells, 5 standard errors each: a false alarm about once in 10^5 runs; the certain ones exactly
    assert ((frequencies - probs_one).abs() <= 5 * standard_error).all()
    assert frequencies[0, 0] == 1 and frequencies[1, 2] == 0

    for extreme in (0.0, 1 - 2**-53):  # the ends of torch.rand's range in float64
        monkeypatch.setattr(
            torch, "rand", lambda shape, extreme=extreme, **kwargs: torch.full(shape, extreme, dtype=kwargs["dtype"])
        )
        drawn = sample_by_inversion(probs, (1,), None)[0]
        assert drawn[0, 0] == 1 and drawn[1, 2] == 0


def test_race_frequencies_match_probabilities_and_impossible_categories_are_never_drawn(monkeypatch):
    """IndeCateR's sampler for ``K > 2``: ``argmin_k E_k / p_k`` is ``k`` with probability ``p_k``."""
    generator = torch.Generator().manual_seed(3)
    num_categories = 6
    logits = torch.randn(2, 3, num_categories, generator=generator, dtype=torch.float64)
    logits[0, 1, [0, 2, num_categories - 1]] = -math.inf
    probs = logits.softmax(-1)
    draws = 40_000
    samples = sample_by_race(probs, (100, draws // 100), generator)
    assert samples.shape == (100, draws // 100, 2, 3) and samples.dtype == torch.long
    frequencies = torch.nn.functional.one_hot(samples.flatten(0, 1), num_categories).double().mean(0)
    standard_error = (probs * (1 - probs) / draws).sqrt()
    # 36 cells, 5 standard errors each: a false alarm about once in 10^5 runs; impossible ones exactly 0
    assert ((frequencies - probs).abs() <= 5 * standard_error + 1e-12).all()

    # the ends of torch.rand's range at every category: log 0 / 0 would be NaN and drawn
    for extreme in (0.0, 1 - 2**-53):
        monkeypatch.setattr(
            torch, "rand", lambda shape, extreme=extreme, **kwargs: torch.full(shape, extreme, dtype=kwargs["dtype"])
        )
        drawn = sample_by_race(probs, (1,), None)[0]
        assert (probs.gather(-1, drawn.unsqueeze(-1)) > 0).all()


@pytest.mark.parametrize("draws", [OPAQUE_MIN_DRAWS - 1, OPAQUE_MIN_DRAWS])
def test_compiled_draws_from_the_threshold_on_are_torchs_own(draws: int):
    """Inside torch.compile on the CPU, from :data:`OPAQUE_MIN_DRAWS` uniforms on, they come
    from the opaque ``catlog::uniform`` (torch's generator: ``manual_seed`` gives eager's
    numbers), one call per draw through AOTAutograd; below it, from inductor's traced ``rand``."""
    torch._dynamo.reset()
    targets: list[str] = []

    def recording(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]):
        targets.extend(str(node.target) for node in graph.graph.nodes if node.op == "call_function")
        return torch._dynamo.backends.common.aot_autograd(fw_compiler=lambda gm, _: gm.forward)(graph, inputs)

    def two_draws(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return uniform((draws,), like, None), uniform((draws,), like, None)

    torch.manual_seed(0)
    first, second = torch.compile(two_draws, fullgraph=True, backend=recording)(torch.zeros(()))
    assert not torch.equal(first, second) and first.shape == second.shape == (draws,)
    opaque = targets.count("catlog.uniform.default")
    if draws < OPAQUE_MIN_DRAWS:
        assert opaque == 0 and any("rand" in target for target in targets)
        return
    assert opaque == 2 and not any("rand" in target for target in targets)
    torch.manual_seed(0)
    assert torch.equal(first, torch.rand(draws)) and torch.equal(second, torch.rand(draws))
