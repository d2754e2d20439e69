"""Property tests (hypothesis) over shapes, batch dims, cardinalities, dtypes and encodings."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import catlog

ESTIMATORS = {
    "indecater": lambda: catlog.IndeCateR(2),
    "indecater-per-variable": lambda: catlog.IndeCateR(1, per_variable=True, chunk_size=2),
    "reinforce": lambda: catlog.REINFORCE(3),
    "rloo": lambda: catlog.RLOO(2),
    "gumbel-softmax": lambda: catlog.GumbelSoftmax(2),
    "exact": lambda: catlog.Exact(),
    "disarm": lambda: catlog.DisARM(2),
    "reinmax": lambda: catlog.ReinMax(2, temperature=1.5),
    "gumbel-rao": lambda: catlog.GumbelRao(2, 3, temperature=0.5),
    "relax": lambda: catlog.RELAX(2, lambda y: y.square().sum((-2, -1))),
}
RELAXED = {"gumbel-softmax", "reinmax", "gumbel-rao"}
BINARY_ONLY = {"disarm"}


@st.composite
def problems(draw: st.DrawFn, categories: st.SearchStrategy[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[*B, D, K]`` with some ``-inf`` (at least one possible category per variable)."""
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    num_variables, num_categories = draw(st.integers(1, 4)), draw(categories)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    shape = (*batch_shape, num_variables, num_categories)
    logits = 3 * torch.randn(shape, generator=generator, dtype=dtype)
    impossible = torch.rand(shape, generator=generator) < draw(st.sampled_from([0.0, 0.4]))
    impossible[..., torch.randint(num_categories, (), generator=generator)] = False
    return logits.masked_fill(impossible, -math.inf), impossible


@settings(max_examples=80, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(ESTIMATORS)), one_hot=st.booleans())
def test_shapes_dtypes_and_impossible_categories(data: st.DataObject, name: str, one_hot: bool) -> None:
    logits, impossible = data.draw(problems(st.just(2) if name in BINARY_ONLY else st.integers(1, 4)))
    logits.requires_grad_(True)
    batch_shape, (num_variables, num_categories) = logits.shape[:-2], logits.shape[-2:]
    table = torch.randn(num_variables, num_categories, dtype=logits.dtype)
    seen: list[torch.Tensor] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        one_hot_x = x if one_hot else torch.nn.functional.one_hot(x.round().long(), num_categories).to(logits.dtype)
        return (one_hot_x * table).sum((-2, -1))

    value = ESTIMATORS[name]()(f, logits, one_hot=one_hot)
    assert value.shape == batch_shape and value.dtype == logits.dtype
    assert bool(torch.isfinite(value).all())
    if value.requires_grad:  # f rounds the relaxed estimators' category values, which cuts the graph
        (grad,) = torch.autograd.grad(value.sum(), logits)
        assert bool(torch.isfinite(grad).all()) and bool((grad[impossible] == 0).all())
    else:
        assert name in RELAXED and not one_hot

    for x in seen:
        if one_hot:
            assert x.shape[1:] == (*batch_shape, num_variables, num_categories) and x.dtype == logits.dtype
            categories = x.argmax(-1)
        else:
            assert x.shape[1:] == (*batch_shape, num_variables)
            categories = x.round().long()
        assert not bool(impossible.expand(x.shape[0], *impossible.shape).gather(-1, categories.unsqueeze(-1)).any())

    lowest = table.masked_fill(impossible, math.inf).amin(-1).sum(-1)
    highest = table.masked_fill(impossible, -math.inf).amax(-1).sum(-1)
    slack = 1e-4 * (1 + table.abs().sum())
    assert bool(((value >= lowest - slack) & (value <= highest + slack)).all())


@settings(max_examples=30, deadline=None)
@given(problem=problems(st.integers(1, 4)), per_variable=st.booleans(), num_samples=st.integers(1, 3))
def test_indecater_evaluates_exactly_its_cost(
    problem: tuple[torch.Tensor, torch.Tensor], per_variable: bool, num_samples: int
) -> None:
    logits, impossible = problem
    rows: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        rows.append(x.shape[0])
        return x.sum(-1).to(logits.dtype)

    estimator = catlog.IndeCateR(num_samples, per_variable=per_variable)
    estimator(f, logits)
    num_variables, num_categories = logits.shape[-2:]
    most = (~impossible).sum(-1).reshape(-1, num_variables).amax(0)
    groups = num_variables if per_variable else 1
    assert sum(rows) == num_samples * (groups + int((most - 1).sum()))
    if not bool(impossible.any()):
        assert sum(rows) == estimator.cost(num_variables, num_categories).evaluations


def _value_and_grad(
    estimator: catlog.Estimator, logits: torch.Tensor, make_dist, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The estimate on ``make_dist(logits)`` and its gradient to ``logits``, drawn with ``seed``."""
    leaf = logits.detach().requires_grad_()

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(1 + x.to(leaf.dtype).sum(-1))

    value = estimator(f, make_dist(leaf), generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
    return value.detach(), torch.zeros_like(leaf) if grad is None else grad


DISTRIBUTIONS = {
    "independent-categorical": lambda logits: torch.distributions.Independent(
        torch.distributions.Categorical(logits=logits), 1
    ),
    "independent-one-hot": lambda logits: torch.distributions.Independent(
        torch.distributions.OneHotCategorical(logits=logits), 1
    ),
    "categorical": lambda logits: torch.distributions.Categorical(logits=logits),
    "one-hot": lambda logits: torch.distributions.OneHotCategorical(logits=logits),
}


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(sorted(ESTIMATORS)),
    kind=st.sampled_from(sorted(DISTRIBUTIONS)),
    seed=st.integers(0, 2**31 - 1),
)
def test_distributions_give_what_their_logits_give(data: st.DataObject, name: str, kind: str, seed: int) -> None:
    """A factorised torch distribution of logits ``L`` gives the result of ``L`` itself, for the same generator."""
    logits, _ = data.draw(problems(st.just(2) if name in BINARY_ONLY else st.integers(1, 4)))
    expected = _value_and_grad(ESTIMATORS[name](), logits, lambda leaf: leaf, seed)
    got = _value_and_grad(ESTIMATORS[name](), logits, DISTRIBUTIONS[kind], seed)
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if logits.dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(got, expected, **tolerance)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(ESTIMATORS)), seed=st.integers(0, 2**31 - 1))
def test_validation_changes_nothing_on_good_input(data: st.DataObject, name: str, seed: int) -> None:
    """``validate_args=False`` gives the result of ``True``, impossible categories included
    (IndeCateR then evaluates every offset instead of skipping impossible rows)."""
    logits, _ = data.draw(problems(st.just(2) if name in BINARY_ONLY else st.integers(1, 4)))
    on = ESTIMATORS[name]()
    off = ESTIMATORS[name]()
    on.validate_args, off.validate_args = True, False
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if logits.dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(
        _value_and_grad(off, logits, lambda leaf: leaf, seed),
        _value_and_grad(on, logits, lambda leaf: leaf, seed),
        **tolerance,
    )
