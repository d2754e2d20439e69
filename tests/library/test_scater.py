"""SCateR and Autoregressive distributions against exact enumeration.

Problems follow ``problems.py``: ``R`` independent runs are batched, each with its own
copy of the parameters, so one call gives ``R`` estimates and one backward pass their
gradients. Unbiasedness checks compare the mean of ``RUNS`` estimates with the exact
gradient and value coordinate by coordinate, tolerance ``z * SE`` with ``z``
Bonferroni-corrected for a joint false-failure rate of 1e-4 per check
(``helpers.assert_unbiased``). Seeds are fixed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import catlog
from catlog._sampling import sample_categorical
from helpers import assert_unbiased, total_variance
from problems import Problem, _parameter, batched_network, estimates, exact, mixed_cardinalities

RUNS = 3000

pytestmark = pytest.mark.usefixtures("one_thread")


def causal_network(seed: int, runs: int) -> Problem:
    """Batch ``[2]``, ``D = 4``, ``K = 3``; ``p(x_d | x_<d)`` from a causal network whose
    embedding and read-out are shared by every position; category 2 is impossible right
    after a 0. ``f`` is non-separable, has a parameter of its own (pathwise gradient) and
    raises (NaN) if handed an impossible sequence."""
    generator = torch.Generator().manual_seed(seed)
    num_variables, num_categories, hidden = 4, 3, 5
    context = _parameter(generator, runs, 2, hidden)
    embed = _parameter(generator, runs, num_categories, hidden)
    readout = _parameter(generator, runs, hidden, num_categories)
    position = _parameter(generator, runs, num_variables, num_categories, scale=0.5)
    weight = _parameter(generator, runs, 2)
    target = torch.randint(0, num_categories, (2, num_variables), generator=generator)

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        prefix = F.one_hot(x[..., :d], num_categories).double().sum(-2)
        hidden_state = torch.tanh(context + torch.einsum("mrbk,rkh->mrbh", prefix, embed))
        logits = torch.einsum("mrbh,rhk->mrbk", hidden_state, readout) + position[:, None, d]
        if d > 0:
            logits = logits.masked_fill(
                (x[..., d - 1] == 0).unsqueeze(-1) & (torch.arange(num_categories) == 2), -math.inf
            )
        return logits

    def f(x: torch.Tensor) -> torch.Tensor:
        impossible = ((x[..., 1:] == 2) & (x[..., :-1] == 0)).any(-1)
        distance = (x - target).abs().sum(-1).double()
        value = torch.cos(distance) + weight * (x[..., 0] == x[..., -1]) + 0.2 * distance**2
        return value.masked_fill(impossible, math.nan)

    dist = catlog.Autoregressive(conditional, num_variables, num_categories, (runs, 2), dtype=torch.float64)
    return Problem([context, embed, readout, position, weight], dist, f)


def running_count(seed: int, runs: int) -> Problem:
    """Batch ``[3]``, ``D = 5``, ``K = 4``; a GRU-like recurrence over the prefix with shared
    weights gives ``p(x_d | x_<d)``; ``f`` rewards sequences that change value often."""
    generator = torch.Generator().manual_seed(seed)
    num_variables, num_categories, hidden = 5, 4, 3
    start = _parameter(generator, runs, 3, hidden)
    embed = _parameter(generator, runs, num_categories, hidden)
    recur = _parameter(generator, runs, hidden, hidden, scale=0.7)
    readout = _parameter(generator, runs, hidden, num_categories)
    run = torch.arange(runs).view(1, runs, 1)

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        state = start.expand(x.shape[0], *start.shape)
        for i in range(d):
            state = torch.tanh(torch.einsum("mrbh,rhg->mrbg", state, recur) + embed[run, x[..., i]])
        return torch.einsum("mrbh,rhk->mrbk", state, readout)

    def f(x: torch.Tensor) -> torch.Tensor:
        changes = (x[..., 1:] != x[..., :-1]).sum(-1).double()
        return torch.sin(changes) + (x[..., 0] == 3).double()

    dist = catlog.Autoregressive(conditional, num_variables, num_categories, (runs, 3), dtype=torch.float64)
    return Problem([start, embed, recur, readout], dist, f)


AUTOREGRESSIVE = (causal_network, running_count)
UNBIASED = {
    "scater": lambda: catlog.SCateR(2),
    "scater-per-variable": lambda: catlog.SCateR(1, per_variable=True),
    "scater-chunked": lambda: catlog.SCateR(2, chunk_size=5),
    "scater-all-rows": lambda: catlog.SCateR(2, pathwise="all"),
    "scater-all-rows-per-variable-chunked": lambda: catlog.SCateR(1, per_variable=True, chunk_size=5, pathwise="all"),
    "reinforce": lambda: catlog.REINFORCE(3),
    "rloo": lambda: catlog.RLOO(3),
}


@pytest.mark.parametrize("make", AUTOREGRESSIVE, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(UNBIASED))
def test_gradient_and_value_match_enumeration(name: str, make) -> None:
    exact_value, exact_grad = exact(make, 1)
    values, grads = estimates(make, UNBIASED[name](), RUNS, 1, sample_seed=7)
    assert_unbiased(grads, exact_grad)
    assert_unbiased(values, exact_value)


def warmed(estimator: catlog.SCateR, make, calls: int) -> catlog.SCateR:
    """``estimator`` after ``calls`` estimates of ``make(1, RUNS)`` with other samples (fills a carried fit)."""
    for call in range(calls):
        estimates(make, estimator, RUNS, 1, sample_seed=100 + call)
    return estimator


FITTED = {
    "leave-one-out": lambda make: catlog.SCateR(3, control_variate=catlog.Fitted(memory=0)),
    "carried": lambda make: warmed(catlog.SCateR(1, control_variate=catlog.Fitted(leave_one_out=False)), make, 3),
    "both": lambda make: warmed(catlog.SCateR(2, control_variate=catlog.Fitted(prior=0.5)), make, 3),
    "both-chunked-all-rows": lambda make: warmed(
        catlog.SCateR(2, chunk_size=5, pathwise="all", control_variate=catlog.Fitted()), make, 3
    ),
}


@pytest.mark.parametrize("make", AUTOREGRESSIVE, ids=lambda p: p.__name__)
@pytest.mark.parametrize("name", sorted(FITTED))
def test_fitted_control_variate_matches_enumeration(name: str, make) -> None:
    """``Fitted`` on the completions' later variables, centred by their own conditional probabilities."""
    exact_value, exact_grad = exact(make, 1)
    values, grads = estimates(make, FITTED[name](make), RUNS, 1, sample_seed=7)
    assert_unbiased(grads, exact_grad)
    assert_unbiased(values, exact_value)


class InSampleCompletions(catlog.Fitted):
    """A wrong fit: a first call carries the statistics of the very completions that the second corrects."""

    def completions(self, *args: torch.Tensor) -> torch.Tensor:
        super().completions(*args)
        return super().completions(*args)


class MixedCentring(catlog.Fitted):
    """A wrong centring: every completion's later variables centred by the conditionals averaged over
    the branch categories, ``sum_k p(k | x_<d) q^(k)``, instead of their own ``q^(k)``."""

    def completions(self, coefficients, futures, future_probs, probs) -> torch.Tensor:
        mixed = (future_probs * probs[..., None, None]).sum(-3, keepdim=True) * (
            futures.sum((-2, -1), keepdim=True) > 0
        )
        return super().completions(coefficients, futures, mixed.expand(futures.shape), probs)


@pytest.mark.parametrize(
    "control_variate", [InSampleCompletions(memory=0.5), MixedCentring(memory=0)], ids=["in-sample", "mixed-centring"]
)
def test_check_detects_a_wrong_fitted_control_variate(control_variate) -> None:
    """Power: a fit on the corrected completions (max z 12 measured) and a wrong centring (12.8)
    fail the check that the right one (N = 3, leave one out: 2.0) passes."""
    _, exact_grad = exact(causal_network, 1)
    estimator = catlog.SCateR(3, control_variate=control_variate)
    with pytest.raises(AssertionError, match="differs from the exact value"):
        assert_unbiased(estimates(causal_network, estimator, RUNS, 1, sample_seed=7)[1], exact_grad)


@pytest.mark.parametrize("make", AUTOREGRESSIVE, ids=lambda p: p.__name__)
def test_fitted_control_variate_lowers_the_variance(make) -> None:
    plain = estimates(make, catlog.SCateR(2), RUNS, 1, sample_seed=8)[1]
    fitted = warmed(catlog.SCateR(2, control_variate=catlog.Fitted(memory=0.99)), make, 20)
    assert total_variance(estimates(make, fitted, RUNS, 1, sample_seed=9)[1]) < total_variance(plain)


def test_check_detects_an_estimator_that_ignores_the_prefix_dependence() -> None:
    """Power: IndeCateR on the conditionals given one sampled prefix, which treats the
    positions as independent, is biased for a dependent model and fails the check."""
    make = running_count
    _, exact_grad = exact(make, 1)
    problem = make(1, RUNS)
    dist = problem.logits
    with torch.no_grad():
        prefix = dist.sample((1,), generator=torch.Generator().manual_seed(3))
    logits = torch.stack([dist.conditional(prefix, d)[0] for d in range(dist.num_variables)], -2)
    value = catlog.IndeCateR(2)(problem.f, logits, generator=torch.Generator().manual_seed(4))
    with pytest.raises(AssertionError):
        assert_unbiased(problem.gradients(value), exact_grad)


@pytest.mark.parametrize("make", AUTOREGRESSIVE, ids=lambda p: p.__name__)
def test_variance_below_reinforce_and_rloo_at_equal_samples(make) -> None:
    variance = {
        type(estimator).__name__: total_variance(estimates(make, estimator, 1000, seed=2, sample_seed=5)[1])
        for estimator in (catlog.SCateR(2), catlog.REINFORCE(2), catlog.RLOO(2))
    }
    assert variance["SCateR"] < variance["REINFORCE"], variance
    assert variance["SCateR"] < variance["RLOO"], variance


def independent(make, seed: int, runs: int) -> Problem:
    """Problem ``make(seed, runs)`` with its logits as an Autoregressive that ignores the prefix."""
    problem = make(seed, runs)
    logits = problem.logits
    batch_shape, (num_variables, num_categories) = logits.shape[:-2], logits.shape[-2:]

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        return logits[..., d, :].expand(x.shape[0], *batch_shape, num_categories)

    dist = catlog.Autoregressive(conditional, num_variables, num_categories, batch_shape, dtype=logits.dtype)
    return Problem(problem.params, dist, problem.f)


@pytest.mark.parametrize("per_variable", [False, True])
@pytest.mark.parametrize("make", [batched_network, mixed_cardinalities], ids=lambda p: p.__name__)
def test_prefix_free_model_gives_indecater_estimates(make, per_variable: bool, monkeypatch) -> None:
    """Same generator, same samples and estimates: the gradient distributions are identical
    (equal means, variance ratio exactly 1), which is stronger than a statistical check.

    SCateR draws by the Gumbel-max trick (its roll-outs follow the noise); IndeCateR draws
    by an exponential race, the same law in fewer ops (``tests/library/test_sampling.py``),
    so here it is made to draw as SCateR does, from the same noise."""
    monkeypatch.setattr(
        catlog.indecater,
        "sample_by_race",
        lambda probs, shape, generator: sample_categorical(probs.log(), shape, generator),
    )
    problem, structured = make(3, 200), independent(make, 3, 200)
    estimator = catlog.SCateR(2, per_variable=per_variable)
    indecater = catlog.IndeCateR(2, per_variable=per_variable)
    value = indecater(problem.f, problem.logits, generator=torch.Generator().manual_seed(5))
    expected = problem.gradients(value)
    got = estimator(structured.f, structured.logits, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(got, value)
    torch.testing.assert_close(structured.gradients(got), expected)


def test_scater_on_logits_is_indecater() -> None:
    grads = []
    for estimator in (catlog.SCateR(3, per_variable=True), catlog.IndeCateR(3, per_variable=True)):
        problem = mixed_cardinalities(4, 50)
        value = estimator(problem.f, problem.logits, generator=torch.Generator().manual_seed(9))
        grads.append(problem.gradients(value))
    assert torch.equal(*grads)
    assert catlog.SCateR(3).cost(5, 4) == catlog.IndeCateR(3).cost(5, 4)


@pytest.mark.parametrize("per_variable", [False, True])
def test_chunking_does_not_change_the_estimate(per_variable: bool) -> None:
    problem = causal_network(2, 20)
    results = [
        problem.gradients(
            catlog.SCateR(2, per_variable=per_variable, chunk_size=chunk)(
                problem.f, problem.logits, generator=torch.Generator().manual_seed(1)
            )
        )
        for chunk in (None, 1, 7)
    ]
    torch.testing.assert_close(results[1], results[0])
    torch.testing.assert_close(results[2], results[0])


@pytest.mark.parametrize("num_variables", [2, 5, 11])
def test_conditional_calls_grow_linearly_in_d(num_variables: int) -> None:
    """2D - 1 calls (3D - 1 per variable), whatever N and K: never D * K * N."""
    calls = []

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        calls.append(x.shape[0])
        return (x[..., :d].sum(-1, keepdim=True) * 0.3 + torch.arange(4.0)).sin()

    dist = catlog.Autoregressive(conditional, num_variables, 4, (2,))
    for estimator, expected in (
        (catlog.SCateR(3), 2 * num_variables - 1),
        (catlog.SCateR(3, per_variable=True), 3 * num_variables - 1),
    ):
        calls.clear()
        estimator(lambda x: x.sum(-1).float(), dist)
        assert len(calls) == expected, (estimator, calls)
    calls.clear()
    catlog.REINFORCE(4)(lambda x: x.sum(-1).float(), dist)
    assert len(calls) == num_variables


@pytest.mark.parametrize(("num_variables", "num_categories"), [(3, 1), (1, 3), (1, 1)])
def test_degenerate_sizes_match_exact(num_variables: int, num_categories: int) -> None:
    """One category (nothing to perturb) or one variable (nothing to roll out)."""
    weight = torch.tensor([0.3, -1.2, 0.7], requires_grad=True)[:num_categories]
    dist = catlog.Autoregressive(lambda x, d: weight.expand(x.shape[0], num_categories), num_variables, num_categories)

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x.float() - 0.5).pow(2).sum(-1)

    for per_variable in (False, True):
        got = torch.autograd.grad(catlog.SCateR(64, per_variable=per_variable)(f, dist), weight)[0]
        expected = torch.autograd.grad(catlog.Exact()(f, dist), weight)[0]
        torch.testing.assert_close(got, expected)


def test_exact_matches_log_prob_enumeration_and_sampling_frequencies() -> None:
    problem = causal_network(5, 1)
    dist, f = problem.logits, problem.f
    states = torch.cartesian_prod(*[torch.arange(3)] * 4)[:, None, None, :].expand(-1, 1, 2, -1)
    probs = dist.log_prob(states).exp()
    torch.testing.assert_close(probs.sum(0), torch.ones(1, 2, dtype=torch.float64))
    possible = probs > 0
    expected = (probs * f(torch.where(possible[..., None], states, 0))).sum(0)
    torch.testing.assert_close(catlog.Exact()(f, dist).detach(), expected.detach())

    samples = dist.sample((20000,), generator=torch.Generator().manual_seed(0))
    index = (samples * torch.tensor([27, 9, 3, 1])).sum(-1)
    frequency = F.one_hot(index, 81).double().mean(0).movedim(-1, 0)
    # binomial standard error, floored at one count's worth for the rare sequences
    standard_error = ((probs.detach() + 1 / 20000) / 20000).sqrt()
    assert bool(((frequency - probs.detach()).abs() <= 5 * standard_error).all())


def test_exact_on_independent_autoregressive_equals_exact_on_logits() -> None:
    problem, structured = mixed_cardinalities(1, 2), independent(mixed_cardinalities, 1, 2)
    expected = catlog.Exact()(problem.f, problem.logits)
    got = catlog.Exact()(structured.f, structured.logits)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(structured.gradients(got), problem.gradients(expected))


def test_exact_refuses_too_many_states() -> None:
    dist = catlog.Autoregressive(lambda x, d: torch.zeros(x.shape[0], 10), 7, 10)
    with pytest.raises(ValueError, match="max_states"):
        catlog.Exact(max_states=1000)(lambda x: x.sum(-1).float(), dist)


def _constant(shape):
    return lambda x, d: torch.zeros(x.shape[0], *shape)


@pytest.mark.parametrize(
    ("conditional", "message"),
    [
        (_constant((3, 5)), r"conditional: expected floating logits of shape \(\d+, 3, 4\)"),
        (lambda x, d: torch.zeros(x.shape[0], 3, 4, dtype=torch.long), "conditional: expected floating logits"),
        (lambda x, d: torch.full((x.shape[0], 3, 4), math.nan), "conditional: .* NaN"),
        (lambda x, d: torch.zeros(x.shape[0], 3, 4).index_fill(-1, torch.tensor([1]), math.nan), "conditional: .* NaN"),
        (
            lambda x, d: torch.full((x.shape[0], 3, 4), -math.inf),
            "conditional: .*all logits -inf, first at index .* at d=",
        ),
        (lambda x, d: [0.0] * 4, "conditional: expected a Tensor"),
    ],
)
def test_bad_conditional_output_is_refused(conditional, message: str) -> None:
    dist = catlog.Autoregressive(conditional, 2, 4, (3,))
    for estimator in (catlog.SCateR(2), catlog.REINFORCE(2), catlog.Exact()):
        with pytest.raises(ValueError, match=message):
            estimator(lambda x: x.sum(-1).float(), dist)
    with pytest.raises(ValueError, match=message):
        dist.sample((2,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conditional": "not callable"}, "conditional: expected a callable"),
        ({"num_variables": 0}, "num_variables: expected an integer >= 1"),
        ({"num_categories": 2.5}, "num_categories: expected an integer"),
        ({"batch_shape": 3}, "batch_shape: expected a sequence"),
        ({"batch_shape": (2, -1)}, "batch_shape: expected an integer >= 0"),
        ({"dtype": torch.long}, "dtype: expected a floating-point dtype"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    arguments = {"conditional": _constant((4,)), "num_variables": 3, "num_categories": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        catlog.Autoregressive(**arguments)


def test_estimators_without_autoregressive_support_say_so() -> None:
    dist = catlog.Autoregressive(_constant((4,)), 3, 4)
    for estimator in (catlog.IndeCateR(2), catlog.GumbelSoftmax(2)):
        with pytest.raises(ValueError, match="dist: .* got an Autoregressive; use SCateR"):
            estimator(lambda x: x.sum(-1).float(), dist)


def test_log_prob_refuses_bad_samples() -> None:
    dist = catlog.Autoregressive(_constant((2, 4)), 3, 4, (2,))
    with pytest.raises(ValueError, match=r"value: expected a LongTensor of shape \[\*S, \*B, D\]"):
        dist.log_prob(torch.zeros(5, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"value: expected categories in \[0, 4\)"):
        dist.log_prob(torch.full((5, 2, 3), 4))


def test_f_output_checked_and_gradient_reaches_shared_parameters() -> None:
    problem = causal_network(1, 1)
    with pytest.raises(ValueError, match="f: expected output of shape"):
        catlog.SCateR(2)(lambda x: x.sum(), problem.logits)
    value = catlog.SCateR(2)(problem.f, problem.logits, one_hot=False)
    grads = torch.autograd.grad(value.sum(), problem.params)
    assert all(bool(g.abs().sum() > 0) for g in grads[1:3])


def test_example_policy_runs_on_a_tiny_config(tmp_path) -> None:
    """Smoke test of ``examples/autoregressive_policy.py``: trains, writes its files."""
    path = Path(__file__).resolve().parents[2] / "examples" / "autoregressive_policy.py"
    spec = importlib.util.spec_from_file_location("autoregressive_policy", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    arguments = ["--num-variables", "3", "--num-categories", "3", "--hidden", "8", "--iterations", "2"]
    assert example.main([*arguments, "--seeds", "1", "--eval-every", "1", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["evaluations_per_step"] for row in summary["results"]] == [7, 7, 7, 2]
    assert (tmp_path / "policy.png").stat().st_size > 0
    assert len((tmp_path / "curves.csv").read_text().splitlines()) == 1 + 4 * 3


def test_cost_benchmark_runs_on_a_tiny_size(tmp_path) -> None:
    """Smoke test of ``benchmarks/scater_cost.py`` (timings and call counts, no memory probe)."""
    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("scater_cost", folder / "scater_cost.py")
        benchmark = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(benchmark)
    finally:
        sys.path.remove(str(folder))
    options = ["--size", "3", "2", "--no-memory", "--min-time", "0", "--min-repeats", "1", "--max-repeats", "1"]
    assert benchmark.main([*options, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "scater_cost.json").read_text())["rows"]
    assert [(row["estimator"], row["conditional_calls"], row["evaluations"]) for row in rows] == [
        ("SCateR 1", 5, 4),
        ("SCateR 1, chunks of 64", 5, 4),
        ("REINFORCE 4", 3, 4),
    ]


@st.composite
def bigram_models(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[*B, D, K, K]`` of ``X_d`` given ``x_{d-1}`` (row 0 serves ``d = 0``), with
    prefix-dependent ``-inf`` (at least one possible category per row)."""
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    num_variables, num_categories = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (*batch_shape, num_variables, num_categories, num_categories)
    logits = 2 * torch.randn(shape, generator=generator, dtype=dtype)
    impossible = torch.rand(shape, generator=generator) < draw(st.sampled_from([0.0, 0.5]))
    keep = torch.randint(num_categories, shape[:-1], generator=generator)
    impossible.scatter_(-1, keep.unsqueeze(-1), False)
    return logits.masked_fill(impossible, -math.inf).requires_grad_(True), impossible


def given_previous(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``table[..., d, x_{d-1}, :]`` (``x_{-1} = 0``) for ``table: [*B, D, K, K]``, ``x: [M, *B, D]``;
    ``[M, *B, D, K]``."""
    previous = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], -1)
    index = previous[..., None, None].expand(*x.shape, 1, table.shape[-1])
    return table.expand(x.shape[0], *table.shape).gather(-2, index).squeeze(-2)


def bigram(logits: torch.Tensor) -> catlog.Autoregressive:
    """The Autoregressive of :func:`bigram_models` logits."""
    batch_shape, (num_variables, num_categories) = logits.shape[:-3], logits.shape[-3:-1]
    return catlog.Autoregressive(
        lambda x, d: given_previous(logits, x)[..., d, :],
        num_variables,
        num_categories,
        batch_shape,
        dtype=logits.dtype,
    )


@settings(max_examples=40, deadline=None)
@given(
    model=bigram_models(),
    num_samples=st.integers(1, 3),
    per_variable=st.booleans(),
    chunk_size=st.sampled_from([1, 3]),
    one_hot=st.booleans(),
    pathwise=st.sampled_from(["samples", "all"]),
)
def test_scater_properties_on_bigram_models(
    model: tuple[torch.Tensor, torch.Tensor],
    num_samples: int,
    per_variable: bool,
    chunk_size: int,
    one_hot: bool,
    pathwise: str,
) -> None:
    """Shapes, dtypes, finite values and gradients (zero at impossible entries; ``f``'s
    weights finite), no impossible sequence handed to ``f``, and chunking that leaves the
    estimate and every gradient unchanged, in both pathwise modes."""
    logits, impossible = model
    dist = bigram(logits)
    batch_shape, num_categories = dist.batch_shape, dist.num_categories
    weights = torch.randn(dist.num_variables, num_categories, dtype=logits.dtype, requires_grad=True)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        categories = x.argmax(-1) if one_hot else x
        seen.append(categories)
        return torch.tanh((F.one_hot(categories, num_categories).to(logits.dtype) * weights).sum((-2, -1)) ** 2)

    results = []
    for chunk in (None, chunk_size):
        estimator = catlog.SCateR(num_samples, per_variable=per_variable, chunk_size=chunk, pathwise=pathwise)
        value = estimator(f, dist, one_hot=one_hot, generator=torch.Generator().manual_seed(1))
        assert value.shape == batch_shape and value.dtype == logits.dtype and bool(torch.isfinite(value).all())
        grad, weights_grad = torch.autograd.grad(value.sum(), (logits, weights))
        assert bool(torch.isfinite(grad).all()) and bool((grad[impossible] == 0).all())
        assert bool(torch.isfinite(weights_grad).all())
        results.append((value.detach(), grad, weights_grad))
    torch.testing.assert_close(results[1], results[0])

    for x in seen:
        assert not bool(given_previous(impossible, x).gather(-1, x.unsqueeze(-1)).any())


def test_autoregressive_is_a_torch_distribution() -> None:
    """Shapes, support, sample and log_prob as ``torch.distributions`` has them: on a
    conditional that ignores its prefix, ``log_prob`` is that of ``Independent(Categorical)``."""
    table = torch.randn(2, 3, 4, dtype=torch.float64)
    dist = catlog.Autoregressive(lambda x, d: table[:, d].expand(x.shape[0], 2, 4), 3, 4, (2,), dtype=torch.float64)
    assert isinstance(dist, torch.distributions.Distribution)
    assert dist.batch_shape == (2,) and dist.event_shape == (3,)
    x = dist.sample((5, 7), generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 7, 2, 3) and x.dtype == torch.long
    assert bool(dist.support.check(x).all()) and not bool(dist.support.check(x + 4).any())
    independent = torch.distributions.Independent(torch.distributions.Categorical(logits=table), 1)
    torch.testing.assert_close(dist.log_prob(x), independent.log_prob(x))


def test_autoregressive_without_validation_does_not_check_conditional_values() -> None:
    nan = lambda x, d: torch.full((x.shape[0], 4), math.nan)  # noqa: E731
    with pytest.raises(ValueError, match="conditional: expected finite values or -inf"):
        catlog.Autoregressive(nan, 3, 4, validate_args=True).sample((2,))
    catlog.Autoregressive(nan, 3, 4, validate_args=False).sample((2,))


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_without_validation_every_offset_is_rolled_out_to_the_same_estimate(chunk_size: int | None) -> None:
    """Validation off rolls out every offset of every variable (no host synchronisation to find
    the impossible categories; their rows keep ``x_d`` and are discarded): more rows of ``f``,
    the same estimate. Category 2 of ``X_1`` is impossible for every prefix."""
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    rows: dict[bool, int] = {True: 0, False: 0}

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        logits = weights[d] + 0.5 * (x[..., :1] == 1).to(weights.dtype)
        return logits.masked_fill((torch.arange(3) == 2) & (d == 1), -math.inf)

    def gradient(validate: bool) -> torch.Tensor:
        def f(x: torch.Tensor) -> torch.Tensor:
            rows[validate] += x.shape[0]
            assert not (x[..., 1] == 2).any(), "f saw an impossible category"
            return (x == 1).sum(-1).double() + x[..., 0] * x[..., 2]

        dist = catlog.Autoregressive(conditional, 3, 3, dtype=torch.float64, validate_args=validate)
        estimator = catlog.SCateR(3, chunk_size=chunk_size, validate_args=validate)
        return torch.autograd.grad(estimator(f, dist, generator=torch.Generator().manual_seed(1)), weights)[0]

    torch.testing.assert_close(gradient(False), gradient(True))
    # N (1 + D (K - 1)) = 3 (1 + 6) rows without validation; with it, X_1's offset 2 is skipped
    assert rows == {False: 21, True: 18}
