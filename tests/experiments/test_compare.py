"""``catlog compare``: the size matching, the autoregressive problem against enumeration, the command line."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import catlog
from catlog.experiments import cli, compare, estimators
from catlog.experiments.problems import Problem, autoregressive, binary, figure1
from helpers import assert_unbiased

pytestmark = pytest.mark.usefixtures("one_thread")


CPU = torch.device("cpu")


def _fig1(num_variables: int = 6, num_categories: int = 10) -> Problem:
    return figure1.problem(num_variables, num_categories, "nonseparable", 0, CPU, torch.float64)


def test_sizes_match_the_budget_by_cost() -> None:
    problem = _fig1()  # IndeCateR(2): 2 (1 + 6 * 9) = 110 evaluations
    candidates = compare.applicable(compare.ESTIMATORS, problem)
    assert set(candidates) == set(compare.ESTIMATORS) - {"disarm"}

    def size(name: str, field: str, budget: int) -> int | None:
        return compare.largest_size(candidates[name], problem.budget(), field, budget)

    assert size("indecater", "evaluations", 110) == 2
    assert size("indecater", "evaluations", 109) == 1
    assert size("rloo", "evaluations", 110) == 110
    assert size("indecater-pv", "evaluations", 110) == 1  # N * D * K = 60
    assert size("indecater-pv", "samples", 2) is None  # D * N = 6 samples at least
    assert size("rloo", "samples", 1) is None  # RLOO needs 2
    assert size("gumbel-rao", "samples", 7) == 7


def test_estimators_apply_where_they_can() -> None:
    hamming = binary.hamming(4, 0, CPU, torch.float64)
    disarm = compare.applicable(["disarm"], hamming)["disarm"]
    assert compare.largest_size(disarm, hamming.budget(), "samples", 5) == 2  # 2 pairs, 4 samples
    sequences = autoregressive.problem(0, CPU, torch.float64)
    candidates = compare.applicable(compare.ESTIMATORS, sequences)
    assert set(candidates) == {"indecater", "indecater-pv", "indecater-fitted", "reinforce", "rloo", "grpo"}
    assert isinstance(candidates["indecater"].build(1, sequences.budget()), catlog.SCateR)
    assert candidates["indecater-fitted"].title(True) == "SCateR + Fitted"
    assert candidates["indecater"].title(True) == "SCateR" and candidates["indecater"].title(False) == "IndeCateR"
    assert estimators.FAMILIES["gs-st"].applies(3, True, False) and not estimators.FAMILIES["gs-st"].applies(
        3, False, False
    )


def test_interpolation_is_exact_on_a_power_law() -> None:
    assert compare.interpolate(1, 2.0, 16, 32.0, 8.0) == 4  # time = 2 n
    assert compare.interpolate(4, 1.0, 64, 4.0, 2.0) == 16  # time = sqrt(n) / 2
    assert compare.interpolate(4, 1.0, 16, 1.0, 3.0) == 4  # flat: the smaller size


@pytest.mark.parametrize("name", ["indecater", "rloo"])
def test_autoregressive_problem_gradients_average_to_its_exact_gradient(name: str) -> None:
    problem = autoregressive.problem(0, CPU, torch.float64)
    estimator = compare.applicable([name], problem)[name].build(2, problem.budget())
    grads = problem.gradients(estimator, 2000, torch.Generator().manual_seed(1))
    assert grads.shape == (2000, problem.exact.numel())
    assert_unbiased(grads, problem.exact)


def test_runner_reports_bias_at_the_noise_floor_for_an_unbiased_estimator() -> None:
    problem = figure1.problem(3, 3, "nonseparable", 0, CPU, torch.float64)
    candidates = compare.applicable(["indecater", "rloo"], problem)
    config = compare.CompareConfig(timing_repeats=1, timing_seconds=0.0)
    runner = compare.Runner(problem, config, CPU, candidates["indecater"], 1, 4000)
    measurement = runner.measure("rloo", candidates["rloo"], 4)
    assert measurement.evaluations == 4 and measurement.variance > 0 and measurement.time_ratio > 0
    assert measurement.sq_bias < 3 * measurement.sq_bias_floor  # expectation: the floor
    assert runner.measure("indecater", candidates["indecater"], 1).time_ratio == 1.0


def _quick_run(problems: list[str], extra: list[str], out, capsys) -> list[dict[str, str]]:
    """``catlog compare --quick`` on ``problems``; checks the files and returns the CSV rows."""
    assert cli.main(["compare", "--quick", "--threads", "1", "--out", str(out), "--problems", *problems, *extra]) == 0
    assert "equal evaluations" in capsys.readouterr().out
    with open(out / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["problem"] for row in rows} == set(problems)
    for problem in problems:
        mine = [row for row in rows if row["problem"] == problem]
        assert {row["setting"] for row in mine} == set(compare.SETTINGS)
        assert all(float(row["variance"]) >= 0 and float(row["cpu_ms"]) > 0 for row in mine)
        assert all((row["sq_bias"] == "") == (problem in ("dvae", "addition")) for row in mine)
        assert {int(row["size"]) for row in mine if row["estimator"] == "indecater"} == {2}
    results = json.loads((out / "compare.json").read_text())
    assert results["settings"]["samples"] == 2 and len(results["results"]) == len(rows)
    for problem in problems:
        assert (out / f"compare-{problem}.png").stat().st_size > 0
    return rows


def test_command_line_quick_run_on_the_synthetic_problems(tmp_path, capsys) -> None:
    rows = _quick_run(["fig1", "binary", "autoregressive"], [], tmp_path, capsys)
    assert {row["estimator"] for row in rows if row["problem"] == "binary"} == set(compare.ESTIMATORS)


def test_command_line_quick_run_on_the_structured_problems(tmp_path, capsys) -> None:
    rows = _quick_run(["frozenlake", "arithmetic-trained"], [], tmp_path, capsys)
    for problem in ("frozenlake", "arithmetic-trained"):  # no relaxation, K > 2
        expected = {"indecater", "indecater-pv", "indecater-fitted", "reinforce", "rloo", "grpo"}
        assert {row["estimator"] for row in rows if row["problem"] == problem} == expected


def test_taylor_has_zero_variance_on_the_quadratic_problem_and_learned_estimators_take_part(tmp_path, capsys) -> None:
    rows = _quick_run(["quadratic"], ["--quadratic", "4x3"], tmp_path, capsys)
    variance = {(row["estimator"], row["setting"]): float(row["variance"]) for row in rows}
    reference = variance["indecater", "equal samples"]
    assert reference > 0.01
    assert variance["indecater-taylor", "equal samples"] < 1e-12 * reference  # rounding alone
    assert variance["indecater-taylor", "equal evaluations"] < 1e-12 * reference
    assert {"rebar", "relax", "indecater-fitted"} <= {row["estimator"] for row in rows}
    rebar = [row for row in rows if row["estimator"] == "rebar" and row["setting"] == "equal evaluations"]
    assert int(rebar[0]["evaluations"]) == 3 * int(rebar[0]["samples"]) <= int(rows[0]["evaluations"])


def test_runner_fits_a_learned_estimator_once_before_measuring_it() -> None:
    problem = figure1.problem(3, 3, "nonseparable", 0, CPU, torch.float64)
    candidates = compare.applicable(["indecater", "relax"], problem)
    config = compare.CompareConfig(timing_repeats=1, timing_seconds=0.0, fit_steps=2)
    runner = compare.Runner(problem, config, CPU, candidates["indecater"], 1, 20)
    relax = runner.build("relax", candidates["relax"], 2)
    untrained = candidates["relax"].build(2, problem.budget())
    assert runner.build("relax", candidates["relax"], 2) is relax
    assert not torch.equal(relax.log_temperature, untrained.log_temperature)


def test_timing_leaves_the_carried_fit_it_measures() -> None:
    # the batched problem measures blocks of estimates; a timed call of one estimate has another batch
    # shape, which would reset a carried Fitted fit if it ran on the measured estimator
    problem = autoregressive.problem(0, CPU, torch.float64)
    candidates = compare.applicable(["indecater", "indecater-fitted"], problem)
    config = compare.CompareConfig(timing_repeats=1, timing_seconds=0.0, fit_steps=3)

    def runner() -> compare.Runner:
        return compare.Runner(problem, config, CPU, candidates["indecater"], 2, 20)

    timed_first = runner()
    timed_first.time("indecater-fitted", candidates["indecater-fitted"], 2)
    fitted = timed_first.measure("indecater-fitted", candidates["indecater-fitted"], 2)
    untimed = runner()
    estimator = untimed.build("indecater-fitted", candidates["indecater-fitted"], 2)
    block = compare.FIT_ESTIMATES
    grads = problem.gradients(estimator, 20, untimed.generator("indecater-fitted", 2, "variance"), block)
    assert fitted.variance == catlog.gradient_variance(grads)
    cold = candidates["indecater-fitted"].build(2, problem.budget())
    cold_grads = problem.gradients(cold, 20, untimed.generator("indecater-fitted", 2, "variance"), block)
    assert fitted.variance != catlog.gradient_variance(cold_grads)  # the fit counts


@pytest.mark.slow
def test_command_line_quick_run_on_the_models(shared_data_dir, tmp_path, capsys) -> None:
    _quick_run(["dvae", "addition"], ["--data-dir", str(shared_data_dir)], tmp_path, capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--repeats", "1"], "--repeats: expected a value >= 2"), (["--temperature", "0"], "--temperature: expected")],
)
def test_bad_options_are_one_line_usage_errors(argv: list[str], message: str, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *argv, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "never").exists()
