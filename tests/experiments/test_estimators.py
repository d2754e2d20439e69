"""The experiments' estimator vocabulary: names, budget rules, meanings."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import catlog
from catlog.experiments import estimators
from catlog.experiments.estimators import Budget

BUDGET = Budget(samples=3, num_variables=4, num_categories=5, temperature=0.5, chunk_size=7)


@pytest.mark.parametrize(
    ("name", "kind", "samples"),
    [
        ("indecater", catlog.IndeCateR, 3),
        ("indecater-pv", catlog.IndeCateR, 3),
        ("reinforce-s", catlog.REINFORCE, 3),
        ("reinforce-f", catlog.REINFORCE, 4 * 5 * 3),
        ("rloo-s", catlog.RLOO, 3),
        ("rloo-f", catlog.RLOO, 4 * 5 * 3),
        ("gs-s", catlog.GumbelSoftmax, 3),
        ("gs-st-f", catlog.GumbelSoftmax, 4 * 5 * 3),
        ("reinmax-s", catlog.ReinMax, 3),
        ("gumbel-rao-f", catlog.GumbelRao, 4 * 5 * 3),
        ("scater", catlog.SCateR, 3),
        ("grpo-s", catlog.GRPO, 3),
        ("grpo-f", catlog.GRPO, 4 * 5 * 3),
        ("indecater-taylor", catlog.IndeCateR, 3),
        ("indecater-fitted", catlog.IndeCateR, 3),
        ("rebar-s", catlog.REBAR, 3),
        ("rebar-f", catlog.REBAR, 4 * 5 * 3 // 3),  # three evaluations per sample
        ("relax-s", catlog.RELAX, 3),
        ("relax-f", catlog.RELAX, 4 * 5 * 3),
    ],
)
def test_names_build_their_estimator_under_the_budget_rule(name: str, kind: type, samples: int) -> None:
    estimator = estimators.make(name, BUDGET)
    assert type(estimator) is kind and estimator.num_samples == samples


def test_options_reach_the_estimators() -> None:
    assert estimators.make("indecater", BUDGET).chunk_size == 7
    assert estimators.make("indecater-pv", BUDGET).cost(4, 5).samples == 4 * 3
    relaxed, straight = estimators.make("gs-s", BUDGET), estimators.make("gs-st-s", BUDGET)
    assert relaxed.temperature == straight.temperature == 0.5
    assert not relaxed.straight_through and straight.straight_through


@pytest.mark.parametrize(("name", "pairs"), [("disarm-s", 1), ("disarm-f", 4 * 5 * 3 // 2)])
def test_disarm_draws_half_the_budget_in_antithetic_pairs(name: str, pairs: int) -> None:
    estimator = estimators.make(name, BUDGET)
    assert type(estimator) is catlog.DisARM and estimator.num_pairs == pairs
    assert estimator.cost(4, 2).samples == 2 * pairs


def test_the_relaxed_baselines_get_the_temperature() -> None:
    assert estimators.make("reinmax-s", BUDGET).temperature == 0.5
    gumbel_rao = estimators.make("gumbel-rao-s", BUDGET)
    assert gumbel_rao.temperature == 0.5 and gumbel_rao.num_rao_samples == estimators.GUMBEL_RAO_SAMPLES


@pytest.mark.parametrize("name", ["rloo", "gs-st", "indecater-s", "rloo-x", "vimco-s"])
def test_unknown_names_are_refused_with_the_vocabulary(name: str) -> None:
    with pytest.raises(ValueError, match=f"^estimator: expected one of indecater, .*got '{name}'"):
        estimators.make(name, BUDGET)


def test_every_name_is_described_once() -> None:
    lines = estimators.describe().splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == list(estimators.NAMES)


def test_the_autoregressive_names_build_estimators_that_take_an_autoregressive_distribution() -> None:
    dist = catlog.Autoregressive(lambda x, d: torch.zeros(x.shape[0], 5), 4, 5)
    budget = dataclasses.replace(BUDGET, autoregressive=True)
    for name in estimators.AUTOREGRESSIVE:
        assert estimators.make(name, budget)(lambda x: x.sum(-1), dist).shape == ()
    assert estimators.make("scater-pv", budget).per_variable
    assert not any(name.startswith(("gs", "disarm", "reinmax", "gumbel-rao")) for name in estimators.AUTOREGRESSIVE)


def test_the_control_variate_entries_carry_their_own_control_variate() -> None:
    taylor, fitted = estimators.make("indecater-taylor", BUDGET), estimators.make("indecater-fitted", BUDGET)
    assert taylor.control_variate == "taylor" and isinstance(fitted.control_variate, catlog.Fitted)
    assert fitted.control_variate is not estimators.make("indecater-fitted", BUDGET).control_variate  # own fit
    assert estimators.FAMILIES["indecater-taylor"].relaxed and not estimators.FAMILIES["indecater-fitted"].relaxed
    with pytest.raises(ValueError, match="num_samples >= 2"):
        estimators.make("indecater-fitted", Budget(1, 4, 5))


@pytest.mark.parametrize("name", ["rebar-f", "reinforce-f", "rloo-f", "disarm-f", "relax-f"])
def test_equal_evaluation_rules_match_indecaters_rule_of_evaluations(name: str) -> None:
    assert estimators.make(name, BUDGET).cost(4, 2).evaluations == 4 * 5 * 3


def test_only_rebar_and_relax_have_learned_parameters() -> None:
    rebar, relax = estimators.make("rebar-s", BUDGET), estimators.make("relax-s", BUDGET)
    assert estimators.learned_parameters(rebar) == [rebar.log_temperature, rebar.learned_scale]
    surrogate = relax.surrogate
    assert isinstance(surrogate, estimators.Surrogate)
    assert estimators.learned_parameters(relax) == [relax.log_temperature, *surrogate.parameters()]
    assert estimators.learned_parameters(estimators.make("indecater-taylor", BUDGET)) == []


def test_one_hot_budgets_reach_every_family() -> None:
    budget = Budget(samples=2, num_variables=4, num_categories=2, one_hot=True)
    for name in estimators.NAMES:
        assert estimators.make(name, budget).one_hot, name


def test_the_surrogate_maps_relaxed_one_hot_to_one_value_per_row_in_the_inputs_dtype() -> None:
    surrogate = estimators.Surrogate(4, 3)
    relaxed = torch.rand(5, 2, 4, 3, dtype=torch.float64).softmax(-1)
    value = surrogate(relaxed)
    assert value.shape == (5, 2) and value.dtype == torch.float64
    (grad,) = torch.autograd.grad(value.sum(), surrogate.hidden.weight)
    assert grad.abs().sum() > 0
