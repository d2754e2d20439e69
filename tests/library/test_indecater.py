"""IndeCateR evaluates f on no more rows than needed, and that changes nothing.

Reference: the naive IndeCateR (eq. 4.1) that evaluates ``f`` on all ``N * D * K``
perturbed rows, ``c[b, d, k] = 1/N sum_n f(x^(n) with x_d = k)``, built here from
the base samples that the estimator hands ``f`` (its one call with autograd on).
The estimator reuses the base value for ``k = x_d``, skips impossible categories
and may evaluate in chunks; with the same samples its value and gradient must
match the reference to float precision.
"""

from __future__ import annotations

import math

import pytest
import torch

import catlog
from catlog._binary import LOGSIGMOID_FROM_ROWS, flip_means, log_softmax
from catlog._objective import Objective
from catlog._perturbation import category_means
from catlog._sampling import sample_categorical

CASES = [
    # batch shape, D, K, N
    ((), 3, 4, 1),
    ((2,), 4, 3, 3),
    ((2, 3), 2, 5, 2),
    ((3,), 5, 2, 4),
]


class RecordingObjective:
    """``f(x) = sin(1 + sum_d w_d x_d + a_b x_0 x_{D-1})``, broadcasting ``a: [*B]``; records every call.

    Attributes:
        base: the input of the call made with autograd on (the base samples).
        perturbed: inputs of the calls made under ``no_grad`` (the perturbed rows).
    """

    def __init__(self, batch_shape: tuple[int, ...], num_variables: int, generator: torch.Generator) -> None:
        self.weights = torch.randn(num_variables, generator=generator, dtype=torch.float64)
        self.mixing = torch.randn(batch_shape, generator=generator, dtype=torch.float64)
        self.base: list[torch.Tensor] = []
        self.perturbed: list[torch.Tensor] = []

    def value(self, x: torch.Tensor) -> torch.Tensor:
        z = x.to(torch.float64)
        return torch.sin(1 + z @ self.weights + self.mixing * z[..., 0] * z[..., -1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (self.base if torch.is_grad_enabled() else self.perturbed).append(x.clone())
        return self.value(x)


def make_logits(
    batch_shape: tuple[int, ...], num_variables: int, num_categories: int, seed: int, impossible: bool
) -> torch.Tensor:
    """Logits ``[*B, D, K]`` in float64; with ``impossible``, about a third are ``-inf`` (never a whole variable)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch_shape, num_variables, num_categories, generator=generator, dtype=torch.float64)
    if impossible:
        drop = torch.rand(logits.shape, generator=generator) < 1 / 3
        keep = torch.randint(num_categories, (*batch_shape, num_variables, 1), generator=generator)
        drop.scatter_(-1, keep, False)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def naive_coefficients(objective: RecordingObjective, samples: torch.Tensor, num_categories: int) -> torch.Tensor:
    """``c[b, d, k] = 1/N sum_n f(x^(n, d) with x_d = k)`` over all ``N * D * K`` rows.

    Args:
        samples: ``LongTensor[N, G, *B, D]``, the base samples; variable ``d`` perturbs
            group ``d`` when ``G = D`` (per variable), group 0 when ``G = 1``.

    Returns:
        ``[*B, D, K]``.
    """
    num_samples, groups = samples.shape[:2]
    num_variables = samples.shape[-1]
    batch_ndim = samples.ndim - 3
    # own[n, d, *B, :] = the sample that variable d perturbs
    own = samples.expand(num_samples, num_variables, *samples.shape[2:])
    eye = torch.eye(num_variables, dtype=torch.bool).view(num_variables, *([1] * batch_ndim), num_variables)
    categories = torch.arange(num_categories).view(num_categories, 1, *([1] * batch_ndim), 1)
    # rows[n, k, d, *B, e] = own[n, d, *B, e] with e = d set to k
    rows = torch.where(eye, categories, own.unsqueeze(1))
    values = objective.value(rows)  # [N, K, D, *B]
    return values.mean(0).movedim((0, 1), (-1, -2))


def reference(objective: RecordingObjective, logits: torch.Tensor, num_samples: int, per_variable: bool):
    """Value ``[*B]`` and logits gradient of ``sum_b`` of the naive estimate on the recorded base samples.

    The value is the Rao-Blackwellised ``1/D sum_d sum_k p_d(k) c_dk``.
    """
    groups = logits.shape[-2] if per_variable else 1
    (base,) = objective.base
    samples = base.unflatten(0, (num_samples, groups))
    coefficients = naive_coefficients(objective, samples, logits.shape[-1])
    possible = logits > -math.inf
    coefficients = torch.where(possible, coefficients, 0.0)
    leaf = logits.detach().requires_grad_()
    probs = leaf.softmax(-1)
    (grad,) = torch.autograd.grad((coefficients * probs).sum(), leaf)
    return (coefficients * probs.detach()).sum(-1).mean(-1), grad


def estimate(logits: torch.Tensor, objective: RecordingObjective, estimator: catlog.IndeCateR, seed: int):
    """Value and logits gradient of ``sum_b`` of one estimate with generator seed ``seed``."""
    leaf = logits.detach().requires_grad_()
    value = estimator(objective, leaf, generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad


@pytest.mark.parametrize("impossible", [False, True], ids=["finite", "with-inf"])
@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
@pytest.mark.parametrize("batch_shape, num_variables, num_categories, num_samples", CASES)
def test_estimate_matches_naive_evaluation_of_all_rows(
    batch_shape, num_variables, num_categories, num_samples, per_variable, impossible
):
    logits = make_logits(batch_shape, num_variables, num_categories, seed=1, impossible=impossible)
    objective = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(2))
    value, grad = estimate(logits, objective, catlog.IndeCateR(num_samples, per_variable=per_variable), seed=3)

    expected_value, expected_grad = reference(objective, logits, num_samples, per_variable)
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
@pytest.mark.parametrize("batch_shape, num_variables, num_categories, num_samples", CASES)
def test_rows_evaluated_all_finite(batch_shape, num_variables, num_categories, num_samples, per_variable):
    logits = make_logits(batch_shape, num_variables, num_categories, seed=4, impossible=False)
    objective = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(5))
    estimator = catlog.IndeCateR(num_samples, per_variable=per_variable)
    estimate(logits, objective, estimator, seed=6)

    groups = num_variables if per_variable else 1
    perturbed_rows = sum(x.shape[0] for x in objective.perturbed)
    assert objective.base[0].shape[0] == num_samples * groups
    assert perturbed_rows == num_samples * num_variables * (num_categories - 1)
    expected_total = (
        num_samples * num_variables * num_categories
        if per_variable
        else num_samples * (1 + num_variables * (num_categories - 1))
    )
    assert objective.base[0].shape[0] + perturbed_rows == expected_total
    assert estimator.cost(num_variables, num_categories).evaluations == expected_total


@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
def test_rows_evaluated_skip_impossible_categories(per_variable):
    # K_d = 4, 1, 3, 2 possible categories out of 5
    logits = torch.zeros(4, 5, dtype=torch.float64)
    logits[1, 1:] = -math.inf
    logits[2, [0, 4]] = -math.inf
    logits[3, :3] = -math.inf
    logits[0, 2] = -math.inf
    possible = logits > -math.inf
    num_samples = 3
    objective = RecordingObjective((), 4, torch.Generator().manual_seed(7))
    estimate(logits, objective, catlog.IndeCateR(num_samples, per_variable=per_variable), seed=8)

    groups = 4 if per_variable else 1
    assert objective.base[0].shape[0] == num_samples * groups
    assert sum(x.shape[0] for x in objective.perturbed) == num_samples * (3 + 0 + 2 + 1)
    for x in [*objective.base, *objective.perturbed]:
        assert possible.expand(x.shape[0], 4, 5).gather(-1, x.unsqueeze(-1)).all(), "f received an impossible category"


@pytest.mark.parametrize("chunk_size", [1, 5, 7, 1000])
@pytest.mark.parametrize("impossible", [False, True], ids=["finite", "with-inf"])
@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
def test_chunked_equals_unchunked_and_bounds_rows_per_call(chunk_size, impossible, per_variable):
    batch_shape, num_variables, num_categories, num_samples = (2, 3), 4, 3, 3
    logits = make_logits(batch_shape, num_variables, num_categories, seed=9, impossible=impossible)
    whole = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(10))
    chunked = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(10))
    value, grad = estimate(logits, whole, catlog.IndeCateR(num_samples, per_variable=per_variable), seed=11)
    value_chunked, grad_chunked = estimate(
        logits, chunked, catlog.IndeCateR(num_samples, per_variable=per_variable, chunk_size=chunk_size), seed=11
    )

    torch.testing.assert_close(value_chunked, value, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grad_chunked, grad, rtol=1e-12, atol=1e-13)
    assert max(x.shape[0] for x in chunked.perturbed) <= chunk_size
    rows = sum(x.shape[0] for x in whole.perturbed)
    assert sum(x.shape[0] for x in chunked.perturbed) == rows
    assert len(chunked.perturbed) == math.ceil(rows / chunk_size)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("one_hot", [False, True], ids=["indices", "one-hot"])
@pytest.mark.parametrize("impossible", [False, True], ids=["finite", "with-inf"])
@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
@pytest.mark.parametrize("batch_shape, num_variables", [((), 1), ((), 6), ((3,), 4), ((2, 3), 5)])
def test_flip_means_equals_general_path(batch_shape, num_variables, per_variable, impossible, one_hot, chunk_size):
    """The fused ``K = 2`` coefficients equal both general paths (ranked offsets and every offset)
    on the same samples, and call ``f`` on the same number of rows per call."""
    num_samples, seed = 3, 20 + num_variables
    logits = make_logits(batch_shape, num_variables, 2, seed=seed, impossible=impossible)
    recording = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(seed))
    f = (lambda x: recording(x[..., 1])) if one_hot else recording
    objective = Objective(f, logits.shape[:-2], 2, logits.dtype, logits.device, one_hot, validate=True)
    groups = num_variables if per_variable else 1
    samples = sample_categorical(logits.log_softmax(-1), (num_samples, groups), torch.Generator().manual_seed(seed))
    values = objective(samples.flatten(0, 1)).reshape(samples.shape[:-1])
    possible = logits > -math.inf

    recording.perturbed.clear()
    with torch.no_grad():
        fused = flip_means(objective, samples, values, possible, chunk_size)
    fused_calls = [x.shape[0] for x in recording.perturbed]
    recording.perturbed.clear()
    with torch.no_grad():
        ranked = category_means(objective, samples, values, possible, 2, chunk_size, skip_impossible=True)
        every_offset = category_means(objective, samples, values, possible, 2, None, skip_impossible=False)

    torch.testing.assert_close(fused, ranked, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(fused, every_offset, rtol=1e-13, atol=1e-13)
    assert sum(fused_calls) == num_samples * num_variables
    if not impossible:
        assert fused_calls == [x.shape[0] for x in recording.perturbed[: len(fused_calls)]]


@pytest.mark.parametrize("validate", [False, True], ids=["unchecked", "validated"])
@pytest.mark.parametrize("impossible", [False, True], ids=["finite", "with-inf"])
@pytest.mark.parametrize("per_variable", [False, True], ids=["shared", "per-variable"])
def test_two_categories_match_naive_evaluation(per_variable, impossible, validate):
    """Through the estimator (the fused path where it applies): value and gradient of eq. 4.1."""
    batch_shape, num_variables, num_samples = (2, 3), 5, 4
    logits = make_logits(batch_shape, num_variables, 2, seed=30, impossible=impossible)
    objective = RecordingObjective(batch_shape, num_variables, torch.Generator().manual_seed(31))
    estimator = catlog.IndeCateR(num_samples, per_variable=per_variable, validate_args=validate)
    value, grad = estimate(logits, objective, estimator, seed=32)

    expected_value, expected_grad = reference(objective, logits, num_samples, per_variable)
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    possible = logits > -math.inf
    for x in objective.perturbed:
        assert possible.expand(x.shape[0], *possible.shape).gather(-1, x.unsqueeze(-1)).all()


@pytest.mark.parametrize("num_categories", [1, 2, 3])
def test_log_softmax_equals_torch(num_categories: int) -> None:
    """The two-category ``logsigmoid`` form (taken from ``LOGSIGMOID_FROM_ROWS`` rows on) equals
    ``log_softmax`` in value and gradient, ``-inf`` logits included (value ``-inf`` and ``0``,
    gradient zero there)."""
    generator = torch.Generator().manual_seed(0)
    rows = LOGSIGMOID_FROM_ROWS // 4 + 1
    logits = torch.randn(4, rows, num_categories, dtype=torch.float64, generator=generator)
    if num_categories == 2:
        logits[0, :2, 0] = -math.inf
    weights = torch.randn(logits.shape, dtype=torch.float64, generator=generator)
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours_value, theirs_value = log_softmax(ours), theirs.log_softmax(-1)
    torch.testing.assert_close(ours_value, theirs_value, rtol=0, atol=1e-13)
    finite = theirs_value.isfinite()
    (ours_value[finite] * weights[finite]).sum().backward()
    (theirs_value[finite] * weights[finite]).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-13)


def test_per_variable_draws_a_separate_sample_set_for_each_variable() -> None:
    """``per_variable=True``: the ``N * D`` samples ``f`` first receives are ``D`` independent sets.
    For one variable, two sets agree on it with probability ``sum_k p_k^2``, not 1 as shared sets would."""
    num_samples, num_variables = 20_000, 3
    logits = torch.tensor([[0.0, 0.5, -0.5]] * num_variables)
    calls: list[torch.Tensor] = []
    estimator = catlog.IndeCateR(num_samples, per_variable=True, generator=torch.Generator().manual_seed(0))
    estimator(lambda x: calls.append(x.clone()) or x.sum(-1).float(), logits)
    sets = calls[0].view(num_samples, num_variables, num_variables)  # [N, group, variable]
    p = logits.softmax(-1)[0]
    agree = float((p**2).sum())
    error = math.sqrt(agree * (1 - agree) / num_samples)
    for first, second in ((0, 1), (0, 2), (1, 2)):
        same = (sets[:, first] == sets[:, second]).double().mean(0)  # per variable
        assert ((same - agree).abs() < 4.5 * error).all(), (first, second, same, agree)
    for group in range(num_variables):  # each set is a sample of p
        frequencies = torch.nn.functional.one_hot(sets[:, group], 3).double().mean(0)
        assert ((frequencies - p).abs() < 4.5 * (p * (1 - p) / num_samples).sqrt()).all()
