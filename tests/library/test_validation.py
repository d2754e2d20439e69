"""Bad input raises a ValueError that names the argument, what was expected and what came."""

from __future__ import annotations

import inspect
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
    "disarm": lambda: catlog.DisARM(2),
    "reinmax": lambda: catlog.ReinMax(2),
    "gumbel-rao": lambda: catlog.GumbelRao(2, 3),
    "indecater-taylor": lambda: catlog.IndeCateR(2, control_variate="taylor"),
    "rebar": lambda: catlog.REBAR(2),
    "relax": lambda: catlog.RELAX(2, lambda y: y.square().sum((-2, -1))),
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


INDECATER_PATHS = {
    "K = 3": (lambda: catlog.IndeCateR(2), 3, False),
    "K = 3, chunks": (lambda: catlog.IndeCateR(2, chunk_size=5), 3, False),
    "K = 3, an impossible category": (lambda: catlog.IndeCateR(2), 3, True),
    "K = 3, per variable": (lambda: catlog.IndeCateR(2, per_variable=True), 3, False),
    "K = 3, fitted": (lambda: catlog.IndeCateR(2, control_variate=catlog.Fitted()), 3, False),
    "K = 2": (lambda: catlog.IndeCateR(2), 2, False),
    "K = 2, chunks": (lambda: catlog.IndeCateR(2, chunk_size=3), 2, False),
}


@pytest.mark.parametrize("path", sorted(INDECATER_PATHS))
@pytest.mark.parametrize("bad_call", [0, 1])
def test_indecater_checks_samples_and_rows_together(path: str, bad_call: int) -> None:
    """IndeCateR checks the samples' values with the rows' (one reduction): a NaN in either call is found."""
    make, num_categories, impossible = INDECATER_PATHS[path]
    logits = torch.zeros(4, 3, num_categories, requires_grad=True)
    if impossible:
        logits.data[0, 1, 0] = -math.inf
    calls = []

    def f(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        values = x.sum(-1).to(torch.float32)
        return values.fill_(math.nan) if len(calls) == bad_call + 1 else values

    with pytest.raises(ValueError, match="f: expected finite values, got"):
        make()(f, logits).sum().backward()
    assert len(calls) > bad_call


def test_objective_defers_the_finite_check() -> None:
    def nan_f(x: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:-1], math.nan)

    samples = torch.zeros(2, 4, 3, dtype=torch.long)
    for validate in (True, False):
        objective = catlog.Objective(nan_f, torch.Size([4]), 2, torch.float32, torch.device("cpu"), False, validate)
        values = objective(samples, check_finite=False)
        assert values.isnan().all()
        if validate:
            with pytest.raises(
                ValueError, match="f: expected finite values, got NaN or infinite in 8 of the 8 entries checked"
            ):
                objective.require_finite(values)
            with pytest.raises(ValueError, match="f: expected finite values"):
                objective(samples)
        else:
            objective.require_finite(values)
            assert objective(samples).isnan().all()


def test_f_must_be_callable() -> None:
    with pytest.raises(ValueError, match="f: expected a callable.*got int"):
        catlog.IndeCateR(1)(3, torch.zeros(2, 2))


COUNTS = {
    "num_samples": [
        catlog.IndeCateR,
        catlog.REINFORCE,
        catlog.GumbelSoftmax,
        catlog.ReinMax,
        lambda n: catlog.GumbelRao(n, 1),
        catlog.REBAR,
        lambda n: catlog.RELAX(n, lambda y: y.square().sum((-2, -1))),
    ],
    "num_pairs": [catlog.DisARM],
    "num_rao_samples": [lambda n: catlog.GumbelRao(1, n)],
}


@pytest.mark.parametrize("name, make", [(name, make) for name, makers in COUNTS.items() for make in makers])
@pytest.mark.parametrize("count", [0, -3, 2.5, True, "2"])
def test_bad_counts(name: str, make, count) -> None:
    with pytest.raises(ValueError, match=f"{name}: expected an integer >= 1"):
        make(count)


@pytest.mark.parametrize("num_categories", [1, 3])
def test_disarm_needs_binary_variables(num_categories: int) -> None:
    with pytest.raises(ValueError, match=f"dist: DisARM expects binary variables.*got K = {num_categories}"):
        catlog.DisARM(1)(good_f, torch.zeros(4, 2, num_categories))


@pytest.mark.parametrize("name, make", [(name, make) for name, makers in COUNTS.items() for make in makers])
def test_counts_are_checked_on_assignment_after_construction(name: str, make) -> None:
    estimator = make(2)
    with pytest.raises(ValueError, match=f"{name}: expected an integer >= 1, got 0"):
        setattr(estimator, name, 0)
    assert getattr(estimator, name) == 2
    setattr(estimator, name, 3)
    assert getattr(estimator, name) == 3


@pytest.mark.parametrize(
    ("make", "name"), [(lambda: catlog.IndeCateR(2, chunk_size=4), "chunk_size"), (catlog.Exact, "max_states")]
)
def test_size_bounds_are_checked_on_assignment_after_construction(make, name: str) -> None:
    estimator = make()
    with pytest.raises(ValueError, match=f"{name}: expected an integer >= 1, got 0"):
        setattr(estimator, name, 0)
    setattr(estimator, name, 5)
    assert getattr(estimator, name) == 5


@pytest.mark.parametrize("name, make", [(name, make) for name, makers in COUNTS.items() for make in makers])
def test_counts_too_large_for_a_tensor_name_the_argument(name: str, make) -> None:
    with pytest.raises(ValueError, match=f"{name}: expected an integer <= {2**32}.*got {2**62}"):
        make(2**62)


def test_disarm_cost_refuses_what_disarm_refuses() -> None:
    with pytest.raises(ValueError, match="num_categories: DisARM expects binary variables.*got K = 3"):
        catlog.DisARM(2).cost(5, 3)
    assert catlog.DisARM(2).cost(5, 2) == catlog.Cost(samples=4, evaluations=4)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_finite_extreme_logits_give_the_exact_value_and_gradient(name: str) -> None:
    logits = torch.tensor([[2e38, -2e38]], requires_grad=True)  # their difference overflows float32

    value = ESTIMATORS[name]()(lambda x: 1 - x[..., 0].to(torch.float32), logits)
    value.backward()
    assert value.item() == 1.0 and logits.grad is not None and bool(logits.grad.isfinite().all())


def test_rloo_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 2, got 1"):
        catlog.RLOO(1)


@pytest.mark.parametrize("make", [catlog.GumbelSoftmax, catlog.ReinMax, lambda n, **kw: catlog.GumbelRao(n, 1, **kw)])
@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature(make, temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature: expected a finite number > 0"):
        make(1, temperature=temperature)
    estimator = make(1)
    with pytest.raises(ValueError, match="temperature: expected a finite number > 0"):
        estimator.temperature = temperature


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1, got 0"):
        catlog.IndeCateR(1, chunk_size=0)


@pytest.mark.parametrize("make", [catlog.IndeCateR, catlog.SCateR])
@pytest.mark.parametrize("pathwise", ["every", "All", None, 1])
def test_bad_pathwise(make, pathwise: object) -> None:
    with pytest.raises(ValueError, match=rf"pathwise: expected one of 'samples', 'all', got {pathwise!r}$"):
        make(1, pathwise=pathwise)


def test_exact_refuses_too_many_states_and_says_how_many() -> None:
    with pytest.raises(ValueError, match=r"K\*\*D = 3\*\*12 = 531441 states.*max_states=1000"):
        catlog.Exact(max_states=1000)(good_f, torch.zeros(12, 3))


def _autoregressive(batch_shape: tuple[int, ...] = (2,)) -> catlog.Autoregressive:
    """Three variables of four categories whose logits ignore the prefix."""
    table = torch.randn(*batch_shape, 3, 4)
    return catlog.Autoregressive(lambda x, d: table[..., d, :].expand(*x.shape[:-1], 4), 3, 4, batch_shape)


EVERY_ESTIMATOR = ESTIMATORS | {
    "indecater-chunked": lambda: catlog.IndeCateR(2, chunk_size=3),
    "indecater-per-variable": lambda: catlog.IndeCateR(2, per_variable=True),
    "scater": lambda: catlog.SCateR(2),
    "indecater-all-rows": lambda: catlog.IndeCateR(2, pathwise="all"),
    "scater-all-rows-chunked": lambda: catlog.SCateR(2, chunk_size=3, pathwise="all"),
}


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
@pytest.mark.parametrize("validate", [True, False])
def test_empty_batch_gives_empty_result(name: str, validate: bool) -> None:
    logits = torch.zeros(0, 3, 2, requires_grad=True)
    estimator = EVERY_ESTIMATOR[name]()
    estimator.validate_args = validate
    value = estimator(good_f, logits)
    assert value.shape == (0,)
    value.sum().backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


@pytest.mark.parametrize("make", [lambda: catlog.SCateR(2), lambda: catlog.SCateR(1, per_variable=True), catlog.Exact])
def test_empty_batch_of_autoregressive_gives_empty_result(make) -> None:
    assert make()(good_f, _autoregressive((0,))).shape == (0,)


@pytest.mark.parametrize(
    "build",
    [
        lambda: catlog.IndeCateR(2, per_variable="no"),
        lambda: catlog.SCateR(2, per_variable=1),
        lambda: catlog.REINFORCE(2, one_hot="yes"),
        lambda: catlog.GumbelSoftmax(2, straight_through=0),
        lambda: catlog.RLOO(2, validate_args="off"),
        lambda: catlog.IndeCateR(2)(good_f, torch.zeros(2, 3), one_hot=1),
        lambda: catlog.Estimator.set_default_validate_args(0),
    ],
)
def test_flags_must_be_bools(build) -> None:
    with pytest.raises(ValueError, match=r"(per_variable|one_hot|straight_through|validate_args|value): expected True"):
        build()


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
@pytest.mark.parametrize(
    ("num_variables", "num_categories", "message"),
    [
        (3, 0, "num_categories: expected an integer >= 1, got 0"),
        (2.5, 2, "num_variables: expected an integer"),
        (True, 2, "num_variables: expected an integer"),
        (0, 2, "num_variables: expected an integer >= 1, got 0"),
    ],
)
def test_cost_checks_its_arguments(name: str, num_variables, num_categories, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EVERY_ESTIMATOR[name]().cost(num_variables, num_categories)


def _writes_into_input(x: torch.Tensor) -> torch.Tensor:
    out = x.sum(-1).to(torch.float32)
    x.add_(1)
    return out


@pytest.mark.parametrize(
    "name", sorted(set(EVERY_ESTIMATOR) - {"gumbel-softmax", "reinmax", "gumbel-rao"})
)  # relaxed: fresh inputs
def test_f_writing_into_its_input_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="f: expected to leave its input unchanged.*x = x.clone()"):
        EVERY_ESTIMATOR[name]()(_writes_into_input, torch.zeros(2, 3, 2))


def test_f_writing_into_its_input_is_refused_on_autoregressive() -> None:
    with pytest.raises(ValueError, match="f: expected to leave its input unchanged"):
        catlog.SCateR(2)(_writes_into_input, _autoregressive())


@pytest.mark.parametrize("generator", [0, "cpu", torch.zeros(2)])
def test_bad_generator_is_refused(generator) -> None:
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None"):
        catlog.IndeCateR(2, generator=generator)
    with pytest.raises(ValueError, match="generator: expected a torch.Generator or None"):
        catlog.REINFORCE(2)(good_f, torch.zeros(2, 3), generator=generator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device type")
def test_generator_on_another_device_is_refused() -> None:
    with pytest.raises(ValueError, match="generator: expected a generator on cuda"):
        catlog.IndeCateR(2)(good_f, torch.zeros(2, 3, device="cuda"), generator=torch.Generator())


def test_meta_device_is_refused() -> None:
    with pytest.raises(ValueError, match="dist: expected a device holding data.*meta"):
        catlog.IndeCateR(2)(good_f, torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="device: expected a device holding data.*meta"):
        catlog.Autoregressive(lambda x, d: x, 3, 4, device="meta")


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
def test_f_output_on_another_device_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="f: expected output on cpu.*got meta"):
        EVERY_ESTIMATOR[name]()(lambda x: torch.zeros(x.shape[:2], device="meta"), torch.zeros(2, 3, 2))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_autoregressive_on_an_unavailable_device_is_refused() -> None:
    with pytest.raises(ValueError, match="device: expected a device this torch can use, got 'cuda'"):
        catlog.Autoregressive(lambda x, d: torch.zeros(*x.shape[:-1], 4), 3, 4, device="cuda")


@pytest.mark.parametrize("shape", [(-1,), (2, -3)])
def test_autoregressive_refuses_a_negative_sample_shape(shape: tuple[int, ...]) -> None:
    dist = catlog.Autoregressive(lambda x, d: torch.zeros(*x.shape[:-1], 4), 3, 4)
    with pytest.raises(ValueError, match="sample_shape: expected an integer >= 0, got -"):
        dist.sample(shape)


def test_conditional_on_another_device_is_refused() -> None:
    dist = catlog.Autoregressive(lambda x, d: torch.zeros(*x.shape[:-1], 4, device="meta"), 3, 4)
    with pytest.raises(ValueError, match="conditional: expected logits on cpu at d=0, got meta"):
        catlog.SCateR(2)(good_f, dist)


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
def test_complex_output_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="f: expected real values, got dtype torch.complex64"):
        EVERY_ESTIMATOR[name]()(lambda x: torch.zeros(x.shape[:2], dtype=torch.complex64), torch.zeros(2, 3, 2))


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        (
            torch.distributions.Categorical(logits=torch.zeros(4)),
            r"last batch dimension as the D variables.*got batch_shape \(\)",
        ),
        (
            torch.distributions.Independent(torch.distributions.Categorical(logits=torch.zeros(2, 3, 4)), 2),
            r"Independent\(Categorical, 2\)",
        ),
        (torch.distributions.Normal(0.0, 1.0), "got Normal"),
        (None, "got None"),
    ],
)
def test_unsupported_distributions_are_refused(dist, message: str) -> None:
    with pytest.raises(ValueError, match=f"dist: .*{message}"):
        catlog.IndeCateR(2)(good_f, dist)


def test_old_logits_keyword_still_works_but_not_twice() -> None:
    logits = torch.randn(2, 3, 4)
    same = catlog.REINFORCE(3)(good_f, logits=logits, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, catlog.REINFORCE(3)(good_f, logits, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="dist: given twice"):
        catlog.REINFORCE(3)(good_f, logits, logits=logits)


def test_validation_switch_per_estimator_and_class_wide() -> None:
    bad = nan_logits()
    try:
        catlog.Estimator.set_default_validate_args(False)
        catlog.IndeCateR(2)(good_f, bad)  # not checked: NaN logits give a wrong result, no error
        with pytest.raises(ValueError, match="1 NaN"):
            catlog.IndeCateR(2, validate_args=True)(good_f, bad)
    finally:
        catlog.Estimator.set_default_validate_args(True)
    with pytest.raises(ValueError, match="1 NaN"):
        catlog.IndeCateR(2)(good_f, bad)
    catlog.IndeCateR(2, validate_args=False)(good_f, bad)


def test_without_validation_f_never_sees_an_impossible_category() -> None:
    logits = torch.randn(5, 4, 3).masked_fill(torch.rand(5, 4, 3) < 0.4, -math.inf)
    logits[..., 0] = 0.0
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x.sum(-1).float()

    catlog.IndeCateR(2, validate_args=False)(f, logits)
    for x in seen:
        chosen = logits.expand(x.shape[0], *logits.shape).gather(-1, x.unsqueeze(-1))
        assert bool((chosen > -math.inf).all())


@pytest.mark.parametrize("name", sorted(EVERY_ESTIMATOR))
def test_repr_shows_every_constructor_argument(name: str) -> None:
    estimator = EVERY_ESTIMATOR[name]()
    arguments = list(inspect.signature(type(estimator).__init__).parameters)[1:]
    text = repr(estimator)
    assert text.startswith(type(estimator).__name__ + "(")
    for argument in arguments:
        assert f"{argument}=" in text
