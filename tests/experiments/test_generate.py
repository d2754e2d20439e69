"""``catlog generate``: smoke tests on tiny configs, the held-out split, bad options."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import catlog
from catlog.experiments import cli
from catlog.experiments.generate import GenerateConfig, GenerationTask, digit_features, make_task
from catlog.experiments.policy_training import policy_gradient_variance


def _log(folder: Path) -> list[dict[str, str]]:
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _generate(folder: Path, *extra: str) -> int:
    return cli.main(["generate", "--threads", "1", "--out", str(folder), "--log-every", "10", *extra])


@pytest.mark.slow
def test_scater_learns_arithmetic_on_the_training_targets(tmp_path: Path) -> None:
    options = ("--targets", "10", "--heldout-every", "5", "--length", "3", "--eval-samples", "64")
    assert _generate(tmp_path / "run", *options, "--iterations", "200", "--variance-at") == 0
    rows = _log(tmp_path / "run")
    assert float(rows[-1]["success_rate"]) > float(rows[0]["success_rate"]) + 0.3
    assert {"heldout_success_rate", "heldout_return"} <= set(rows[0])


@pytest.mark.parametrize("estimator", ["scater", "rloo-f", "grpo-s"])
def test_the_regular_language_task_runs_with_every_kind_of_estimator(tmp_path: Path, estimator: str) -> None:
    options = ("--task", "dfa", "--language", "mod3", "--length", "4", "--hidden", "8", "--samples", "2")
    assert _generate(tmp_path / "run", *options, "--estimator", estimator, "--iterations", "3", "--plot") == 0
    rows = _log(tmp_path / "run")
    loop = {"iteration", "epoch", "train_wall_s", "train_cpu_s", "gradient_spread"}
    assert set(rows[0]) == {*loop, "evaluations", "success_rate", "return"}
    assert (tmp_path / "run" / "curves.png").is_file()


def test_the_held_out_targets_are_fixed_disjoint_and_share_the_digits_of_training() -> None:
    first, other_seed = make_task(GenerateConfig(targets=50)), make_task(GenerateConfig(targets=50, seed=3))
    train, heldout = first.splits["train"], first.splits["heldout"]
    assert len(heldout) == 10 and torch.equal(heldout, other_seed.splits["heldout"])
    assert sorted(torch.cat([train, heldout]).tolist()) == list(range(50))
    # every digit a held-out target shows, at its place, also occurs in training
    assert bool((digit_features(heldout).sum(0) <= 50 * digit_features(train).sum(0)).all())


def test_the_context_is_the_target_digits() -> None:
    features = digit_features(torch.tensor([407]))
    assert features.view(3, 10).argmax(-1).tolist() == [7, 0, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--task", "poetry"], "--task"),
        (["--length", "17"], "--length: expected at most 16"),
        (["--targets", "1001"], "--targets"),
        (["--language", "dyck"], "--language"),
    ],
)
def test_bad_options_are_usage_errors(options: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_gradient_variance_of_a_reward_never_seen_is_zero_not_a_division_by_zero() -> None:
    zero = lambda x, targets: torch.zeros(x.shape[:-1])  # noqa: E731
    task = GenerationTask(zero, zero, {"train": torch.arange(3)}, digit_features, 3, 14, torch.float32)
    measured = policy_gradient_variance(task, task.policy(8), catlog.REINFORCE(2), 3, torch.Generator())
    assert measured == {"variance": 0.0, "relative_variance": 0.0}
    rewarded = GenerationTask(
        lambda x, t: x[..., 0].float(), zero, {"train": torch.arange(3)}, digit_features, 3, 14, torch.float32
    )
    measured = policy_gradient_variance(rewarded, rewarded.policy(8), catlog.REINFORCE(2), 3, torch.Generator())
    assert measured["variance"] > 0 and measured["relative_variance"] > 0
