"""Synthetic experiments (figures 1 and 2): objectives, statistics, and the command line on tiny settings."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import catlog
from catlog.experiments import synthetic_gradients as gradients
from catlog.experiments import synthetic_optimise as optimise
from catlog.experiments.cli import main
from catlog.experiments.estimators import Budget
from catlog.experiments.options import parse_size, show_size
from catlog.experiments.problems import Problem, binary, figure1

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: these tensors are small, and CI has two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batched_estimates(estimator: catlog.Estimator, problem: Problem, runs: int, seed: int) -> torch.Tensor:
    """``runs`` independent gradient estimates ``[runs, D * K]`` (batched on copies of the logits)."""
    return problem.gradients(estimator, runs, torch.Generator().manual_seed(seed))


def squared_deviations(estimates: torch.Tensor) -> torch.Tensor:
    """``z_r = ||g_r - mean g||^2 * R / (R - 1)`` for ``estimates: [R, P]``; their mean is ``sum_i Var_r g_ri``."""
    count = estimates.shape[0]
    return (estimates.double() - estimates.double().mean(0)).square().sum(-1) * count / (count - 1)


def test_problem_values_match_their_formulas() -> None:
    problem = figure1.problem(3, 5, "nonseparable", 0, CPU, torch.float64)
    x = torch.tensor([[0, 1, 4], [4, 4, 4]])
    distance = (x - problem.f.target).abs().sum(-1).double()
    torch.testing.assert_close(problem.f(x), distance.square() / 3)
    separable = figure1.Distance(problem.f.target, "separable")
    torch.testing.assert_close(separable(x), distance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_indecater_is_exact_on_the_separable_f_up_to_round_off(dtype: torch.dtype) -> None:
    eps, eps64 = torch.finfo(dtype).eps, torch.finfo(torch.float64).eps
    for (num_variables, num_categories), seed in zip([(8, 3), (4, 10), (2, 100)], range(3)):
        problem = figure1.problem(num_variables, num_categories, "separable", seed, CPU, dtype)
        exact = problem.exact
        estimates = batched_estimates(catlog.IndeCateR(1), problem, 20, seed)
        stats = gradients.error_statistics(estimates, exact)
        # Relative round-off: IndeCateR sums D terms of at most K in dtype, the float64
        # reference sums K^D terms; the cosine itself is computed in float64.
        scale = eps * num_variables * num_categories + eps64 * num_categories**num_variables
        cosine_round_off = scale**2 + 10 * eps64
        assert stats["bias_cos"] < cosine_round_off
        assert stats["variance_cos"] < cosine_round_off**2
        assert math.sqrt(stats["sq_bias_sum"]) < scale * float(exact.norm())
        assert math.sqrt(stats["variance_sum"]) < scale * float(exact.norm())


def test_indecater_is_not_exact_on_the_nonseparable_f() -> None:
    problem = figure1.problem(8, 3, "nonseparable", 0, CPU, torch.float64)
    exact = problem.exact
    stats = gradients.error_statistics(batched_estimates(catlog.IndeCateR(1), problem, 20, 0), exact)
    assert stats["variance_sum"] > 1e-3 * float(exact.norm()) ** 2


@pytest.mark.parametrize("objective", figure1.OBJECTIVES)
def test_indecater_1_has_lower_variance_than_rloo_100_on_12x3(objective: str) -> None:
    problem = figure1.problem(12, 3, objective, 0, CPU, torch.float32)
    runs = 200
    indecater = batched_estimates(catlog.IndeCateR(1), problem, runs, 1)
    rloo = batched_estimates(catlog.RLOO(100), problem, runs, 2)
    z_indecater, z_rloo = squared_deviations(indecater), squared_deviations(rloo)
    standard_error = math.sqrt(float(z_indecater.var() + z_rloo.var()) / runs)
    assert float(z_rloo.mean() - z_indecater.mean()) > 4 * standard_error


def test_error_statistics_of_an_unbiased_estimate_sit_at_the_noise_floor() -> None:
    generator = torch.Generator().manual_seed(0)
    exact = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    runs, noise = 4000, 0.1
    estimates = exact + noise * torch.randn(runs, 3, generator=generator, dtype=torch.float64)
    stats = gradients.error_statistics(estimates, exact)
    # Var_r of 3 N(0, noise^2) coordinates: the sum has mean 3 noise^2 and sd noise^2 sqrt(6 / runs).
    assert abs(stats["variance_sum"] - 3 * noise**2) < 4 * noise**2 * math.sqrt(6 / runs)
    # sq_bias_sum is noise^2 / runs times a chi-square with 3 degrees of freedom (sd sqrt(6)).
    assert stats["sq_bias_sum"] < stats["sq_bias_floor"] * (3 + 4 * math.sqrt(6)) / 3
    assert stats["bias_cos"] > 0


def test_parse_size_accepts_dxk_and_rejects_the_rest() -> None:
    assert parse_size("12x3") == (12, 3)
    assert show_size(((12, 3), (6, 10))) == "12x3 6x10"
    for text in ("12", "0x3", "3x1", "axb"):
        with pytest.raises(Exception, match="expected"):
            parse_size(text)


def test_expected_value_matches_enumeration() -> None:
    logits = torch.randn(8, 2, dtype=torch.float64)
    exact = catlog.Exact()(binary.objective, logits)
    torch.testing.assert_close(binary.expected_value(logits), exact)
    assert binary.expected_value(torch.zeros(200, 2)).item() == pytest.approx(0.250001, abs=1e-7)


def test_gumbel_temperature_is_annealed_every_20_iterations() -> None:
    method = optimise.Method("gs-st-s", lr=0.01, budget=Budget(4, 5, 2, temperature=0.1))
    options = optimise.OptimiseConfig(
        num_variables=5, iterations=40, log_every=20, variance_every=20, variance_repeats=2
    )
    rows, _ = optimise.optimise(method, 0, options)
    temperatures = [row["temperature"] for row in rows]
    assert temperatures == pytest.approx([0.1, 0.1 * math.exp(-0.05), 0.1 * math.exp(-0.1)])


def test_median_counts_never_reached_as_infinite() -> None:
    assert optimise.median_or_none([3, 5, None]) == 5
    assert optimise.median_or_none([3, None, None]) is None


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradients_command_writes_tables_json_csv_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "g"
    args = ["gradients", "--configs", "3x3", "4x2", "--runs", "4", "--samples", "10", "--f", "nonseparable"]
    assert main([*args, "--out", str(out), "--seed", "1"]) == 0
    results = json.loads((out / "gradients.json").read_text())["results"]
    assert [(r["num_variables"], r["estimator"]) for r in results] == [
        (d, name) for d in (3, 4) for name in gradients.ESTIMATORS
    ]
    for row in results:
        assert all(math.isfinite(row[key]) for key in list(row)[7:])
    table = read_csv(out / "gradients.csv")
    assert len(table) == 8 and list(table[0]) == list(results[0])
    for name in ("fig1_nonseparable.png", "fig1_nonseparable_3x3.png", "fig1_nonseparable_4x2.png"):
        assert_png(out / name)
    assert "indecater" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))


def test_optimise_command_writes_logs_summary_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ["optimise", "--iterations", "10", "--seeds", "2", "--num-variables", "6", "--variance-every", "5"]
    assert main([*args, "--variance-repeats", "3", "--out", str(out)]) == 0
    log = read_csv(out / "optimise_log.csv")
    assert len(log) == 2 * 4 * 3
    assert all(math.isfinite(float(row["expected_f"])) and float(row["variance"]) >= 0 for row in log)
    result = json.loads((out / "optimise.json").read_text())
    assert result["seeds_done"] == 2
    assert [row["method"] for row in result["summary"]] == list(optimise.METHODS)
    assert_png(out / "fig2_optimise.png")


def test_demo_command_runs_both_experiments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--runs", "3", "--iterations", "5", "--seeds", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "nonseparable f, D = 12, K = 3" in printed and "rloo-f" in printed
    assert "gap closed" in printed and "never" not in printed  # figure 2 reads as progress, not as failure
    for name in ("gradients-separable/fig1_separable_12x3.png", "gradients-nonseparable/fig1_nonseparable_12x3.png"):
        assert_png(tmp_path / name)
    assert_png(tmp_path / "optimise" / "fig2_optimise.png")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gradients", "--runs", "1"], "--runs: expected a value >= 2, got 1"),
        (
            ["optimise", "--log-every", "5", "--variance-every", "7"],
            "--variance-every: expected a multiple of --log-every",
        ),
        (["optimise", "--iterations", "0"], "--iterations: expected a value >= 1, got 0"),
    ],
)
def test_option_errors_are_one_line_usage_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert message in error[-1] and error[-1].startswith("catlog ") and "Traceback" not in "".join(error)
    assert not (tmp_path / "never").exists()


def test_figure_1_target_is_drawn_from_the_distribution_itself() -> None:
    # b ~ p_theta: mean_d [p_d(b_d) - sum_k p_dk^2] has mean zero; a uniform b would give
    # mean_d [1/K - sum_k p_dk^2], about -0.3 at K = 10 with N(0, 1) logits.
    deviations = []
    for seed in range(200):
        logits, target = figure1.draw(6, 10, seed)
        p = logits.softmax(-1)
        chosen = p.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        deviations.append((chosen - p.square().sum(-1)).mean())
    values = torch.stack(deviations)
    standard_error = values.std() / math.sqrt(len(values))
    assert values.mean().abs() < 4 * standard_error
    assert standard_error < 0.02


def test_figure_2_starts_from_a_fresh_normal_draw_per_seed() -> None:
    first, again, other = (binary.start_logits(200, seed) for seed in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == (200, 2)
    assert abs(first.mean().item()) < 4 / math.sqrt(400) and abs(first.std().item() - 1) < 4 / math.sqrt(800)
