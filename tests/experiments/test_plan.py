"""``catlog plan``: smoke tests on tiny configs, resume, closed loop, the plot, bad options."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("gymnasium")

from catlog.experiments import cli, run_folder  # noqa: E402
from catlog.experiments.generate import GenerateConfig  # noqa: E402
from catlog.experiments.gym_simulator import TabularSimulator, make_env  # noqa: E402
from catlog.experiments.options import config_json  # noqa: E402
from catlog.experiments.plan import PlanConfig, PlanningTask  # noqa: E402
from catlog.experiments.policy_training import summary_table  # noqa: E402


def _log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _plan(folder: Path, *extra: str) -> int:
    return cli.main(["plan", "--threads", "1", "--out", str(folder), "--log-every", "20", *extra])


@pytest.mark.slow
def test_scater_raises_the_success_rate_on_frozen_lake(tmp_path: Path) -> None:
    assert _plan(tmp_path / "run", "--estimator", "scater", "--iterations", "100", "--variance-at", "0", "50") == 0
    rows = _log(tmp_path / "run")
    assert float(rows[-1]["success_rate"]) > float(rows[0]["success_rate"]) + 0.5
    assert [row["iteration"] for row in rows] == ["0", "20", "40", "60", "80", "100"]
    assert int(rows[-1]["evaluations"]) == 100 * (1 + 10 * 3)  # SCateR(1).cost(D=10, K=4)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [row["iteration"] for row in summary["variance"]] == [0, 50]
    assert all(row["variance"] > 0 for row in summary["variance"])


def test_resume_continues_exactly(tmp_path: Path) -> None:
    common = ("--estimator", "rloo-s", "--samples", "3", "--env", "CliffWalking-v1", "--horizon", "6")
    assert _plan(tmp_path / "whole", *common, "--iterations", "40") == 0
    assert _plan(tmp_path / "parts", *common, "--iterations", "20") == 0
    assert _plan(tmp_path / "parts", *common, "--iterations", "40", "--resume") == 0
    strip = lambda rows: [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]  # noqa: E731
    assert strip(_log(tmp_path / "parts")) == strip(_log(tmp_path / "whole"))


def test_a_checkpoint_of_the_former_policy_loop_is_refused_for_resume_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    options = ("--env", "CliffWalking-v1", "--horizon", "3", "--hidden", "4", "--iterations", "2")
    assert _plan(tmp_path / "run", *options) == 0
    run_folder.save_checkpoint(tmp_path / "run" / "checkpoint.pt", {"policy": {}, "optimiser": {}, "state": {}})
    capsys.readouterr()
    assert _plan(tmp_path / "run", *options, "--resume") == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "schema 2 of plan/generate's own loop, expected 2" in error[0]


def test_the_variance_is_measured_at_the_last_iteration_too(tmp_path: Path) -> None:
    options = ("--env", "CliffWalking-v1", "--horizon", "3", "--hidden", "4", "--iterations", "4", "--log-every", "2")
    assert _plan(tmp_path / "run", *options, "--variance-at", "0", "3", "4") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [row["iteration"] for row in summary["variance"]] == [0, 3, 4]
    assert [row["iteration"] for row in _log(tmp_path / "run")] == ["0", "2", "4"]


def test_a_run_stopped_by_its_time_budget_resumes_with_a_larger_one(tmp_path: Path) -> None:
    options = ("--env", "CliffWalking-v1", "--horizon", "3", "--hidden", "4", "--iterations", "3")
    assert _plan(tmp_path / "run", *options, "--time-budget", "1e-9") == 0
    assert [row["iteration"] for row in _log(tmp_path / "run")] == ["0", "1"]
    assert _plan(tmp_path / "run", *options, "--time-budget", "1000", "--resume") == 0
    assert [row["iteration"] for row in _log(tmp_path / "run")] == ["0", "1", "3"]


TAXI = "--env Taxi-v4 --starts 3 --horizon 4 --condition states --hidden 8 --samples 2".split()


@pytest.mark.parametrize("estimator", ["scater-pv", "reinforce-f", "grpo-s"])
def test_closed_loop_taxi_with_several_starts_the_plot_and_the_table(
    tmp_path: Path, estimator: str, capsys: pytest.CaptureFixture
) -> None:
    assert _plan(tmp_path / "run", *TAXI, "--estimator", estimator, "--iterations", "2", "--plot") == 0
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["policy-plot", str(tmp_path / "run"), "--output", str(tmp_path / "all.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| estimator | runs | iterations |")
    assert table[2].startswith(f"| {estimator} | 1 | 2 [2, 2] |")


def test_closed_loop_inputs_are_the_states_the_prefix_reaches() -> None:
    simulator = TabularSimulator.from_env(make_env("FrozenLake-v1", "4x4"))
    task = PlanningTask(simulator, torch.tensor([0, 4]), 5, "states", torch.float32)
    seen: list[torch.Tensor] = []
    policy = task.policy(8)
    original = policy.forward
    policy.forward = lambda tokens, context: (seen.append(tokens), original(tokens, context))[1]  # type: ignore[method-assign]
    plans = task.distribution(policy).sample((3,))
    for d, tokens in enumerate(seen):
        assert torch.equal(tokens, simulator.states(torch.tensor([0, 4]), plans[..., :d]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--estimator", "gs-st"], "--estimator"),
        (["--estimator", "rloo-s", "--samples", "1"], "--samples: expected a value >= 2"),
        (["--time-budget", "0"], "--time-budget"),
        (["--condition", "both"], "--condition"),
        (["--resume"], "--resume: expected --out"),
    ],
)
def test_bad_options_are_usage_errors(options: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plan", *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_lists_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["plan", "--help"])
    text = capsys.readouterr().out
    assert all(option in text for option in ("--env", "--condition", "--time-budget", "--resume", "grpo-f"))


RUNS = Path(__file__).resolve().parents[2] / "docs" / "runs"


@pytest.mark.parametrize(("folder", "config_type"), [("plan", PlanConfig), ("generate", GenerateConfig)])
def test_the_committed_runs_are_configs_of_today_and_still_tabulate(folder: str, config_type: type) -> None:
    runs = sorted(path.parent for path in (RUNS / folder).glob("*/*/log.csv"))
    assert runs
    for run in runs:
        saved = json.loads((run / "config.json").read_text())
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        config = config_type(**{**values, "out": Path(saved["out"])})
        # options added since these runs, at the values they ran with: the clock of their budgets, no --estimator-lr
        assert config_json(config) == {**saved, "budget_clock": "cpu", "estimator_lr": None}
    table = summary_table(runs).splitlines()
    assert len(table) == 2 + len({json.loads((run / "config.json").read_text())["estimator"] for run in runs})
