"""With validation off, an estimate makes no host synchronisation: ``torch.compile(fullgraph=True)``
captures the function from logits to the loss in one graph, and AOTAutograd its backward.

The ``aot_eager`` backend traces exactly as inductor does (a graph break or a data-dependent
branch fails ``fullgraph=True`` the same way) without compiling C++, so the test stays quick;
``benchmarks/compile.py`` times inductor against eager.
"""

from __future__ import annotations

import math

import pytest
import torch

import catlog

ESTIMATORS = {
    "indecater": lambda: catlog.IndeCateR(2, validate_args=False),
    "indecater-per-variable": lambda: catlog.IndeCateR(2, per_variable=True, validate_args=False),
    "indecater-all-rows": lambda: catlog.IndeCateR(2, pathwise="all", validate_args=False),
    "indecater-chunks": lambda: catlog.IndeCateR(2, chunk_size=3, validate_args=False),
    "indecater-chunks-all-rows": lambda: catlog.IndeCateR(2, chunk_size=3, pathwise="all", validate_args=False),
    "rloo-chunks": lambda: catlog.RLOO(5, chunk_size=2, validate_args=False),
    "gumbel-softmax-chunks": lambda: catlog.GumbelSoftmax(5, chunk_size=2, validate_args=False),
    "reinforce": lambda: catlog.REINFORCE(3, validate_args=False),
    "rloo": lambda: catlog.RLOO(3, validate_args=False),
    "gumbel-softmax": lambda: catlog.GumbelSoftmax(3, validate_args=False),
    "disarm": lambda: catlog.DisARM(2, validate_args=False),
    "reinmax": lambda: catlog.ReinMax(2, validate_args=False),
    "gumbel-rao": lambda: catlog.GumbelRao(2, 3, validate_args=False),
}
QUICK = ["indecater", "indecater-chunks", "indecater-per-variable", "reinforce", "rloo", "gumbel-softmax"]


def loss_of(estimator: catlog.Estimator):
    """The loss ``mean_b estimate_b`` of ``f(x) = mean_d (x_d - 0.499)^2`` as a function of logits."""

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return estimator(lambda x: (x.to(logits.dtype) - 0.499).pow(2).mean(-1), logits).mean()

    return loss


def logits_with(impossible: bool, num_categories: int) -> torch.Tensor:
    logits = torch.randn(4, 5, num_categories)
    if impossible:
        logits[:, 1:, 1] = -math.inf
    return logits.requires_grad_()


CASES = (
    [(name, False, 2) for name in QUICK]
    + [pytest.param(name, False, 2, marks=pytest.mark.slow) for name in sorted(set(ESTIMATORS) - set(QUICK))]
    + [
        # every offset is evaluated, impossible rows keep the sample: no branch on the data
        ("indecater", True, 2),
        ("indecater", True, 3),
        ("indecater-chunks", True, 3),  # the general path with ranks, chunked: no offsets found from the data
        ("indecater-chunks-all-rows", False, 3),
        pytest.param("rloo-chunks", False, 3, marks=pytest.mark.slow),
        pytest.param("reinforce", True, 3, marks=pytest.mark.slow),
        pytest.param("gumbel-softmax", True, 3, marks=pytest.mark.slow),
    ]
)


@pytest.mark.parametrize(("name", "impossible", "num_categories"), CASES)
def test_estimate_compiles_into_one_graph_with_its_backward(name: str, impossible: bool, num_categories: int) -> None:
    torch._dynamo.reset()
    logits = logits_with(impossible, num_categories)
    compiled = torch.compile(loss_of(ESTIMATORS[name]()), fullgraph=True, backend="aot_eager")
    compiled(logits).backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


@pytest.mark.parametrize("chunk_size", [None, pytest.param(5, marks=pytest.mark.slow)])
def test_scater_on_an_autoregressive_compiles_into_one_graph(chunk_size: int | None) -> None:
    """SCateR's roll-outs with validation off: every offset is rolled out, so how many rows
    each position fills is known without looking at the data."""
    torch._dynamo.reset()
    weights = torch.randn(4, 3, requires_grad=True)

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        previous = x[:, d - 1] if d > 0 else torch.zeros_like(x[:, 0])
        logits = weights[d] + 0.5 * torch.nn.functional.one_hot(previous, 3).to(weights.dtype)
        return logits.masked_fill((torch.arange(3) == 2) & (previous == 1).unsqueeze(-1), -math.inf)

    def loss() -> torch.Tensor:
        dist = catlog.Autoregressive(conditional, 4, 3, validate_args=False)
        estimator = catlog.SCateR(2, chunk_size=chunk_size, validate_args=False)
        return estimator(lambda x: (x == 1).sum(-1).float() + x[:, 0] * x[:, -1], dist)

    torch.compile(loss, fullgraph=True, backend="aot_eager")().backward()
    assert weights.grad is not None and bool(torch.isfinite(weights.grad).all())


def test_with_validation_on_the_graph_breaks() -> None:
    """The check that the test above can fail: value checks synchronise, so fullgraph refuses."""
    torch._dynamo.reset()
    compiled = torch.compile(loss_of(catlog.IndeCateR(2, validate_args=True)), fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match="(?i)graph break|data-dependent|Unsupported"):
        compiled(logits_with(False, 2))
