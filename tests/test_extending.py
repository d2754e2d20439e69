"""docs/extending.md's examples, run as written: the estimator is unbiased against exact enumeration,
and the problem measures it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

import catlog

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def doc_examples(section: str) -> dict[str, Any]:
    """Run the Python blocks of one ``## section`` of docs/extending.md in one namespace, in order."""
    text = DOC.read_text().split(f"\n## {section}\n")[1].split("\n## ")[0]
    namespace: dict[str, Any] = {}
    torch.manual_seed(0)  # the examples draw from torch's global generator
    for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL):
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def test_the_documented_estimator_is_unbiased_and_its_baseline_lowers_the_variance() -> None:
    namespace = doc_examples("Adding an estimator")
    assert float(namespace["value"].detach()) >= 0 and namespace["logits"].grad is not None  # the usage block ran
    torch.manual_seed(0)
    logits = torch.randn(3, 3, dtype=torch.float64)
    target = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x - target).abs().sum(-1).square() / 3 + 5  # the offset makes a baseline worth having

    leaf = logits.clone().requires_grad_()
    (exact,) = torch.autograd.grad(catlog.Exact()(f, leaf), leaf)
    estimator = namespace["MovingAverageREINFORCE"](10, decay=0.1, generator=torch.Generator().manual_seed(1))
    assert repr(estimator).startswith("MovingAverageREINFORCE(num_samples=10, decay=0.1")
    first = catlog.repeated_gradients(estimator, f, logits, 4000, per_call=4000)  # baseline 0, then about E[f]
    second = catlog.repeated_gradients(estimator, f, logits, 4000, per_call=4000)
    assert abs(float(estimator.baseline) - (1 - 0.1**2) * float(catlog.Exact()(f, logits))) < 0.05
    for estimates in (first, second):
        standard_error = estimates.std(0) / estimates.shape[0] ** 0.5
        assert ((estimates.mean(0) - exact.flatten()).abs() < 4 * standard_error).all()
    assert float(second.var(0).sum()) < 0.5 * float(first.var(0).sum())
    assert estimator.cost(3, 3) == catlog.Cost(samples=10, evaluations=10)


def test_the_documented_problem_measures_an_unbiased_estimator_at_its_floor(capsys) -> None:
    namespace = doc_examples("Adding a problem")
    problem, gradients = namespace["problem"], namespace["gradients"]
    assert gradients.shape == (100, 12) and (problem.num_variables, problem.num_categories) == (4, 3)
    variance, sq_bias = (float(word) for word in capsys.readouterr().out.split())
    assert variance > 0 and sq_bias < 5 * variance / 100  # IndeCateR is unbiased: about its noise floor
