"""Bad input raises a ValueError that names the argument, what was expected and what came."""

from __future__ import annotations

import math

import pytest
import torch

import catlog

ESTIMATORS = {
    "indecater": lambda: catlog.IndeCateR(2),
    "reinforce": lambda: catlog.REINFORCE(2),
    "rloo": lambda: catlog.RLOO(2),
    "gumbel-softmax": lambda: catlog.GumbelSoftmax(2),
    "exact": lambda: catlog.Exact(),
}


def good_f(x: torch.Tensor) -> torch.Tensor:
    return x.sum(-1).to(torch.float32)


def nan_logits() -> torch.Tensor:
    logits = torch.zeros(2, 3)
    logits[1, 2] = math.nan
    return logits


def plus_inf_logits() -> torch.Tensor:
    logits = torch.zeros(2, 3)
    logits[0, 0] = math.inf
    return logits


def no_possible_category() -> torch.Tensor:
    logits = torch.zeros(4, 2, 3)
    logits[2, 1] = -math.inf
    return logits


BAD_LOGITS = {
    "one dimension": (torch.zeros(3), r"shape \[\*B, D, K\].*got shape \(3,\)"),
    "not a tensor": ([[0.0, 1.0]], "logits Tensor.*got list"),
    "integer dtype": (torch.zeros(2, 3, dtype=torch.long), "floating-point logits.*torch.int64"),
    "nan": (nan_logits(), "1 NaN"),
    "plus inf": (plus_inf_logits(), r"1 \+inf"),
    "variable without a possible category": (no_possible_category(), r"all logits -inf, first at index \(2, 1\)"),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("case", sorted(BAD_LOGITS))
def test_bad_logits(name: str, case: str) -> None:
    logits, message = BAD_LOGITS[case]
    with pytest.raises(ValueError, match=f"dist: expected .*{message}"):
        ESTIMATORS[name]()(good_f, logits)


BAD_OUTPUTS = {
    "wrong shape": (lambda x: x.float(), r"f: expected output of shape \(\d+, 4\).*got shape \(\d+, 4, 3\)"),
    "not a tensor": (lambda x: 1.0, "f: expected to return a torch.Tensor.*got float"),
    "nan": (lambda x: torch.full(x.shape[:-1], math.nan), "f: expected finite values, got"),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_bad_f_output(name: str, case: str) -> None:
    f, message = BAD_OUTPUTS[case]
    with pytest.raises(ValueError, match=message):
        ESTIMATORS[name]()(f, torch.zeros(4, 3, 2))


def test_f_must_be_callable() -> None:
    with pytest.raises(ValueError, match="f: expected a callable.*got int"):
        catlog.IndeCateR(1)(3, torch.zeros(2, 2))


@pytest.mark.parametrize("make", [catlog.IndeCateR, catlog.REINFORCE, catlog.GumbelSoftmax])
@pytest.mark.parametrize("num_samples", [0, -3, 2.5, True, "2"])
def test_bad_num_samples(make, num_samples) -> None:
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 1"):
        make(num_samples)


def test_rloo_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 2, got 1"):
        catlog.RLOO(1)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature: expected a finite number > 0"):
        catlog.GumbelSoftmax(1, temperature=temperature)


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1, got 0"):
        catlog.IndeCateR(1, chunk_size=0)


def test_exact_refuses_too_many_states_and_says_how_many() -> None:
    with pytest.raises(ValueError, match=r"K\*\*D = 3\*\*12 = 531441 states.*max_states=1000"):
        catlog.Exact(max_states=1000)(good_f, torch.zeros(12, 3))
