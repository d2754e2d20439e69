"""catlog.measure: the statistics against closed forms, catlog.compare on enumerable problems, and its errors."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import catlog
from catlog import measure


def squared_distance(target: torch.Tensor):
    """``f(x) = (sum_d |x_d - b_d|)^2``: smooth in relaxed values, non-separable; broadcasts over leading dims."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x - target).abs().sum(-1).square()

    return f


@pytest.fixture
def problem() -> tuple[torch.Tensor, object]:
    """Logits ``[D = 3, K = 3]`` and a squared distance to a fixed target."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    return logits, squared_distance(torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64))


def test_statistics_of_hand_made_estimates() -> None:
    gradients = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    assert measure.gradient_variance(gradients) == pytest.approx(4.0)  # Var([1, 3]) + Var([0, 2])
    assert measure.squared_bias_floor(gradients) == pytest.approx(2.0)
    assert measure.squared_bias(gradients, torch.tensor([2.0, 0.0])) == pytest.approx(1.0)
    assert measure.signal_to_noise(gradients) == pytest.approx((4 + 1) / 4)
    assert measure.signal_to_noise(gradients, torch.tensor([3.0, 4.0])) == pytest.approx(25 / 4)
    assert measure.signal_to_noise(torch.ones(3, 2)) == math.inf


def test_variance_matches_closed_form() -> None:
    """REINFORCE with one sample on one variable: ``g = f(x) (e_x - p)``, so
    ``sum_k Var g_k = sum_x p_x f_x^2 |e_x - p|^2 - |sum_x p_x f_x (e_x - p)|^2``."""
    logits = torch.tensor([[0.3, -0.5, 1.0]], dtype=torch.float64)
    values = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    p = logits[0].softmax(-1)
    scores = torch.eye(3, dtype=torch.float64) - p  # row x: e_x - p
    exact_gradient = (p * values) @ scores
    closed_form = float((p * values.square() * scores.square().sum(-1)).sum() - exact_gradient.square().sum())

    repeats = 4000
    generator = torch.Generator().manual_seed(2)
    gradients = measure.repeated_gradients(
        catlog.REINFORCE(1), lambda x: values[x].sum(-1), logits, repeats, per_call=500, generator=generator
    )
    assert gradients.shape == (repeats, 3)
    deviations = (gradients - gradients.mean(0)).square().sum(-1)  # per-estimate terms of the variance
    standard_error = float(deviations.std()) / math.sqrt(repeats)
    assert measure.gradient_variance(gradients) == pytest.approx(closed_form, abs=4 * standard_error)
    torch.testing.assert_close(measure.exact_gradient(lambda x: values[x].sum(-1), logits), exact_gradient)


def test_rloo_within_its_floor_and_straight_through_far_above(problem) -> None:
    logits, f = problem
    table = catlog.compare(
        f,
        logits,
        {"RLOO": catlog.RLOO(4), "ST": catlog.GumbelSoftmax(4)},
        repeats=400,
        per_call=100,
        generator=torch.Generator().manual_seed(3),
        timing_rounds=1,
    )
    rloo, straight_through = table["RLOO"], table["ST"]
    # For an unbiased estimator sq_bias / floor is about chi^2_P / P (P = 9 entries): above 4 with probability < 1e-4.
    assert rloo.sq_bias is not None and rloo.sq_bias < 4 * rloo.sq_bias_floor
    assert straight_through.sq_bias is not None and straight_through.sq_bias > 100 * straight_through.sq_bias_floor
    assert (rloo.biased, straight_through.biased) == (False, True)
    assert (rloo.samples, rloo.evaluations, rloo.repeats) == (4, 4, 400)
    assert rloo.time_ratio is not None and straight_through.time_ratio is not None
    assert table.exact_norm == pytest.approx(float(measure.exact_gradient(f, logits).square().sum()))


def test_equal_evaluations_and_rows(problem) -> None:
    logits, f = problem
    table = catlog.compare(
        f,
        logits,
        {"IndeCateR": catlog.IndeCateR(2), "RLOO": catlog.RLOO, "REINFORCE": lambda n: catlog.REINFORCE(n)},
        repeats=20,
        evaluations="first",
        exact=False,
        timing_rounds=0,
    )
    assert [row.evaluations for row in table] == [14, 14, 14]  # 2 (1 + D (K - 1)) with D = 3, K = 3
    assert table[1].estimator == "RLOO(14)"
    assert all(row.sq_bias is None and row.ms is None and row.time_ratio is None for row in table)
    dicts = table.to_dicts()
    assert [d["name"] for d in dicts] == ["IndeCateR", "RLOO", "REINFORCE"]
    assert set(dicts[0]) == {field.name for field in dataclasses.fields(catlog.EstimatorRow)}
    assert (dicts[1]["evaluations"], dicts[1]["repeats"], dicts[1]["sq_bias"]) == (14, 20, None)
    text = str(table)
    assert "D = 3, K = 3, 20 estimates each" in text and "RLOO" in text.splitlines()[4]


def test_sequence_names_and_exact_given(problem) -> None:
    logits, f = problem
    exact = measure.exact_gradient(f, logits)
    table = catlog.compare(f, logits, [catlog.RLOO(3), catlog.GumbelSoftmax(2, 0.5)], repeats=10, exact=exact)
    assert [row.name for row in table] == ["RLOO(3)", "GumbelSoftmax(2, temperature=0.5)"]
    assert all(row.sq_bias is not None for row in table)


def test_largest_size() -> None:
    assert measure.largest_size(catlog.RLOO, 4, 3, 18) == 18
    assert measure.largest_size(catlog.IndeCateR, 4, 3, 20) == 2  # 9 evaluations per sample
    assert measure.largest_size(catlog.DisARM, 4, 2, 11) == 5  # 2 per pair
    assert measure.largest_size(catlog.RLOO, 4, 3, 1) is None  # RLOO needs 2
    assert measure.largest_size(catlog.IndeCateR, 4, 3, 3, field="samples") == 3


def test_gradient_with_respect_to_parameters() -> None:
    """Logits computed by a linear map: the gradient w.r.t. its weights, in chunks of repeats."""
    generator = torch.Generator().manual_seed(4)
    weights = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64).requires_grad_()
    context = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    logits = torch.einsum("bc,cdk->bdk", context, weights)  # [B = 5, D = 3, K = 4]
    f = squared_distance(torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64))

    exact = measure.exact_gradient(f, logits, wrt=[weights])
    (expected,) = torch.autograd.grad(catlog.Exact()(f, logits).sum(), weights, retain_graph=True)
    torch.testing.assert_close(exact, expected.flatten())

    table = catlog.compare(
        f, logits, {"RLOO": catlog.RLOO(3)}, wrt=[weights], repeats=200, per_call=8, generator=generator
    )
    assert table["RLOO"].sq_bias is not None and table["RLOO"].sq_bias < 4 * table["RLOO"].sq_bias_floor


def autoregressive_problem() -> tuple[torch.Tensor, catlog.Autoregressive]:
    """``p(x_d | x_{d-1}) = softmax(T[x_{d-1}])``, ``x_0`` from ``softmax(T[0])``: D = 3, K = 3."""
    table = torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64).requires_grad_()

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        return table[x[..., d - 1]] if d > 0 else table[0].expand(*x.shape[:-1], 3)

    return table, catlog.Autoregressive(conditional, 3, 3, dtype=torch.float64)


def test_autoregressive_with_respect_to_its_parameters() -> None:
    table, dist = autoregressive_problem()
    f = squared_distance(torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64))
    rows = catlog.compare(f, dist, {"SCateR": catlog.SCateR(2)}, wrt=[table], repeats=100, timing_rounds=0)
    assert rows["SCateR"].sq_bias is not None and rows["SCateR"].sq_bias < 4 * rows["SCateR"].sq_bias_floor


def test_independent_categorical_is_read_as_its_logits(problem) -> None:
    logits, f = problem
    dist = torch.distributions.Independent(torch.distributions.Categorical(logits=logits), 1)
    torch.testing.assert_close(measure.exact_gradient(f, dist), measure.exact_gradient(f, logits))


def test_interleaved_ms() -> None:
    times = measure.interleaved_ms([lambda: None, lambda: sum(range(1000))], rounds=3)
    assert len(times) == 2 and all(t >= 0 for t in times)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"repeats": 1}, "repeats: expected an integer >= 2"),
        ({"estimators": []}, "estimators: expected at least one estimator"),
        ({"estimators": "RLOO"}, "estimators: expected a sequence"),
        ({"estimators": {"RLOO": catlog.RLOO}}, r"estimators\['RLOO'\]: expected an estimator or"),
        ({"estimators": {"RLOO": catlog.RLOO}, "evaluations": 1}, "evaluations: RLOO costs more than 1"),
        ({"estimators": {"RLOO": catlog.RLOO}, "evaluations": "first"}, "evaluations: 'first' needs"),
        ({"exact": "yes"}, "exact: expected True, False, 'auto'"),
        ({"exact": torch.zeros(2)}, r"exact: expected the gradient's shape \(9,\)"),
        ({"per_call": 0}, "per_call: expected an integer >= 1"),
        ({"timing_rounds": -1}, "timing_rounds: expected an integer >= 0"),
        ({"wrt": [torch.zeros(2)]}, r"wrt\[0\]: expected a tensor that requires a gradient"),
    ],
)
def test_compare_argument_errors(problem, arguments, message) -> None:
    logits, f = problem
    given = {"estimators": [catlog.RLOO(2)], "repeats": 4, "timing_rounds": 0, **arguments}
    with pytest.raises(ValueError, match=message):
        catlog.compare(f, logits, given.pop("estimators"), **given)


def test_autoregressive_errors() -> None:
    table, dist = autoregressive_problem()
    f = squared_distance(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="wrt: an Autoregressive has no logits"):
        catlog.compare(f, dist, [catlog.SCateR(1)], repeats=2)
    with pytest.raises(ValueError, match="per_call: an Autoregressive takes one estimate per call"):
        catlog.compare(f, dist, [catlog.SCateR(1)], repeats=2, wrt=[table], per_call=2)


def test_statistics_errors() -> None:
    with pytest.raises(ValueError, match=r"gradients: expected a tensor \[R, P\] with R >= 2"):
        measure.gradient_variance(torch.zeros(5))
    with pytest.raises(ValueError, match=r"gradients: expected a tensor \[R, P\] with R >= 2"):
        measure.gradient_variance(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"exact: expected shape \(5,\)"):
        measure.squared_bias(torch.zeros(3, 5), torch.zeros(4))
    with pytest.raises(ValueError, match="field: expected 'samples' or 'evaluations'"):
        measure.largest_size(catlog.RLOO, 2, 2, 10, field="rows")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounds: expected an integer >= 1"):
        measure.interleaved_ms([lambda: None], rounds=0)
