"""``catlog plan`` and ``catlog generate``: an autoregressive policy trained against a reward.

A :class:`Problem` gives the policy, its distribution over ``D`` choices of ``K`` for a batch of
contexts, the reward ``f`` and the metrics of sampled sequences; :class:`PolicyTask` trains it in
:mod:`catlog.experiments.training`'s loop (one step per epoch: Adam on ``-mean_B E_p[f]`` over
every context) until ``--iterations`` or ``--time-budget``. ``log.csv`` gets ``evaluations``
(rows of ``f`` per context so far) and the metrics of ``--eval-samples`` fresh sequences per
context; ``variance.csv`` the gradient variance at ``--variance-at``
(:func:`policy_gradient_variance`); ``summary.json`` the result, ``curves.png`` the curves with ``--plot``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch

import catlog
from catlog.experiments import common, estimators, plotting, training
from catlog.experiments.options import check_at_least, option

DEFAULT_ITERATIONS = 200
VARIANCE = "variance.csv"


class Problem(Protocol):
    """What :class:`PolicyTask` needs of a problem: ``D`` choices of ``K`` per context."""

    num_variables: int
    num_categories: int

    def policy(self, hidden: int) -> torch.nn.Module:
        """A fresh policy network of width ``hidden``."""

    def distribution(self, policy: torch.nn.Module) -> catlog.Autoregressive:
        """The policy's distribution over ``D`` choices for the training contexts (batch ``B``)."""

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """``f``: ``LongTensor[M, *B, D]`` -> ``[M, *B]`` on the training contexts."""

    def evaluate(self, policy: torch.nn.Module, samples: int, generator: torch.Generator) -> dict[str, float]:
        """Metrics of ``samples`` fresh sequences per context (no autograd)."""


@dataclass(frozen=True, kw_only=True)
class PolicyTrainingConfig(training.TrainingOptions):
    """The training options that ``plan`` and ``generate`` share."""

    default_epochs: ClassVar[int] = DEFAULT_ITERATIONS
    length_option: ClassVar[str] = "iterations"
    estimator: str = option(
        "scater",
        "gradient estimator (those that take an autoregressive policy)",
        choices=estimators.AUTOREGRESSIVE,
        metavar="NAME",
    )
    samples: int = option(1, "N: SCateR's base samples; -s/-f rules scale from it", minimum=1)
    iterations: int | None = option(
        None, "Adam steps", minimum=0, group=training.LENGTH, default_text=f"{DEFAULT_ITERATIONS} without --time-budget"
    )
    lr: float = option(3e-3, "Adam learning rate", above=0)
    hidden: int = option(64, "GRU width of the policy", minimum=1)
    log_every: int = option(10, "iterations between log rows and checkpoints", minimum=1)
    eval_samples: int = option(256, "fresh sequences per context at each log row", minimum=1)
    variance_at: tuple[int, ...] = option(
        (0,), "iterations at which the gradient variance is measured (none: no values)", minimum=0, empty=True
    )
    variance_repeats: int = option(20, "gradient estimates per variance measurement", minimum=2)
    plot: bool = option(False, "also draw curves.png (see `catlog policy-plot`)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least("--samples", self.samples, estimators.parse(self.estimator)[0].min_size)


def policy_gradient_variance(
    task: Problem, policy: torch.nn.Module, estimator: catlog.Estimator, repeats: int, generator: torch.Generator
) -> dict[str, float | None]:
    """``repeats`` estimates of ``grad mean_B E_p[f]`` at the current parameters: the trace of their
    covariance (``variance``, :func:`catlog.gradient_variance`) and that over the squared norm of
    their mean (``relative_variance``, scale-free as GRPO rescales; 0 when every estimate is zero,
    ``None`` when only their mean is)."""
    parameters = [p for p in policy.parameters() if p.requires_grad]
    estimates = []
    for _ in range(repeats):
        value = estimator(task.reward, task.distribution(policy), generator=generator).mean()
        grads = torch.autograd.grad(value, parameters, allow_unused=True)
        estimates.append(
            torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)])
        )
    stacked = torch.stack(estimates)
    variance = catlog.gradient_variance(stacked)
    mean_norm = float(stacked.double().mean(0).square().sum())
    if mean_norm > 0:
        relative: float | None = variance * stacked.shape[1] / mean_norm
    else:  # every estimate zero (no sampled sequence was rewarded): no signal and no noise
        relative = 0.0 if variance == 0 else None
    return {"variance": variance, "relative_variance": relative}


def evaluation_generator(seed: int, iteration: int) -> torch.Generator:
    """The fixed stream of the evaluation at ``iteration``: the same for every estimator of one seed."""
    return torch.Generator().manual_seed(1_000_003 * seed + iteration)


class PolicyTask:
    """A :class:`Problem` as a :class:`~catlog.experiments.training.Task`: one example (all contexts at
    once), so an epoch is one step; the variance is measured before the steps of ``--variance-at``
    (and at the end), into ``variance.csv`` of ``out`` (whose rows a resumed run keeps)."""

    num_examples = batch_size = 1

    def __init__(self, config: PolicyTrainingConfig, problem: Problem, out: Path) -> None:
        self.config, self.problem, self.out = config, problem, out
        self.model = problem.policy(config.hidden)
        budget = estimators.Budget(config.samples, problem.num_variables, problem.num_categories, autoregressive=True)
        self.estimator = estimators.make(config.estimator, budget)
        self.cost = self.estimator.cost(problem.num_variables, problem.num_categories).evaluations
        self.variances = read_variances(out)

    def loss(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """``-mean_B E_p[f]`` as the estimator gives it (with its gradient); no statistics."""
        return -self.estimator(
            self.problem.reward, self.problem.distribution(self.model), generator=generator
        ).mean(), {}

    def start_epoch(self, epoch: int) -> None:
        """Measure the variance if ``--variance-at`` names this iteration (``epoch``) and it is not yet done."""
        config = self.config
        if epoch in config.variance_at and epoch not in self.variances:
            generator = evaluation_generator(config.seed, epoch)
            measured = policy_gradient_variance(
                self.problem, self.model, self.estimator, config.variance_repeats, generator
            )
            self.variances[epoch] = measured
            common.write_csv(self.out / VARIANCE, self.variance_rows())

    def variance_rows(self) -> list[dict[str, Any]]:
        """The measurements so far: ``iteration``, ``variance``, ``relative_variance``."""
        return [{"iteration": i, **self.variances[i]} for i in sorted(self.variances)]

    def log_due(self, iteration: int, steps_per_epoch: int) -> bool:
        """Every ``--log-every`` iterations, from 0."""
        return iteration % self.config.log_every == 0

    def evaluate(self, iteration: int, final: bool, generator: torch.Generator) -> dict[str, Any]:
        """``evaluations`` so far and the problem's metrics, from :func:`evaluation_generator`."""
        if final:
            self.start_epoch(iteration)
        with torch.no_grad():
            samples, fixed = self.config.eval_samples, evaluation_generator(self.config.seed, iteration)
            return {"evaluations": iteration * self.cost, **self.problem.evaluate(self.model, samples, fixed)}


def summarise(trainer: training.Trainer, state: training.TrainState) -> dict[str, Any]:
    """The summary of a finished run (printed in one line; ``curves.png`` drawn with ``--plot``)."""
    task = trainer.task
    assert isinstance(task, PolicyTask)
    config = task.config
    summary = {
        "estimator": config.estimator,
        "repr": repr(task.estimator),
        "evaluations_per_iteration": task.cost,
        "iterations": state.iteration,
        "evaluations": state.iteration * task.cost,
        "cpu_s": state.train_cpu_s,
        "wall_s": state.train_wall_s,
        "final": state.log[-1],
        "first": state.log[0],
        "variance": task.variance_rows(),
    }
    if config.plot:
        print(f"plot: {plot_runs([trainer.out], trainer.out / 'curves.png')}")
    print(f"{config.estimator}: results in {trainer.out}")
    return summary


def run(config: PolicyTrainingConfig, experiment: str, make_problem: Callable[[Any], Problem]) -> int:
    """Train ``make_problem(config)``'s policy in the run folder of ``config`` (single-process, on the CPU)."""
    make = lambda ctx, out: PolicyTask(config, make_problem(config), out)  # noqa: E731
    return training.run(config, experiment, make, summarise, device="cpu")


def read_variances(folder: Path) -> dict[int, dict[str, float | None]]:
    """``variance.csv`` of a run folder by iteration (empty when the run measured none)."""
    path = folder / VARIANCE
    rows = common.read_csv(path) if path.is_file() else []
    return {int(row.pop("iteration")): {k: float(v) if v else None for k, v in row.items()} for row in rows}


# The metrics drawn by plot_runs (those a log has), against these x axes.
PLOTTED_METRICS: tuple[str, ...] = ("success_rate", "return", "heldout_success_rate")
X_AXES: tuple[tuple[str, str], ...] = (
    ("iteration", "iteration"),
    ("evaluations", "evaluations of f per context"),
    ("train_cpu_s", "training CPU seconds"),
)
# The time columns of runs logged before the one training loop, by their names today.
RENAMED = {"cpu_s": "train_cpu_s", "wall_s": "train_wall_s"}


def read_run(folder: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """:func:`catlog.experiments.plotting.read_run`, the time columns of older runs renamed (:data:`RENAMED`)."""
    config, rows = plotting.read_run(folder)
    return config, [{RENAMED.get(k, k): v for k, v in row.items()} for row in rows]


def mean_curves(runs: list[list[dict[str, float]]]) -> dict[str, list[float]]:
    """Column-wise means over runs of their first ``min(len)`` log rows (seeds of one estimator)."""
    length = min(len(rows) for rows in runs)
    columns = [key for key in runs[0][0] if all(key in rows[0] for rows in runs)]
    return {key: [sum(rows[i][key] for rows in runs) / len(runs) for i in range(length)] for key in columns}


def plot_runs(folders: list[Path], path: Path, title: str | None = None) -> Path:
    """Metrics against iterations, evaluations and CPU time; runs of one estimator averaged (seeds)."""
    by_estimator: dict[str, list[list[dict[str, float]]]] = {}
    for folder in folders:
        config, rows = read_run(Path(folder))
        by_estimator.setdefault(config["estimator"], []).append(rows)
    metrics = [m for m in PLOTTED_METRICS if all(m in runs[0][0] for runs in by_estimator.values())]
    fig, axes = plotting.subplots(
        len(metrics), len(X_AXES), figsize=(4 * len(X_AXES), 2.8 * len(metrics)), squeeze=False
    )
    for name, runs in by_estimator.items():
        curves = mean_curves(runs)
        for i, metric in enumerate(metrics):
            for j, (x, _) in enumerate(X_AXES):
                axes[i, j].plot(
                    curves[x], curves[metric], label=f"{name} ({len(runs)})", **plotting.line_style(len(curves[x]))
                )
    for i, metric in enumerate(metrics):
        axes[i, 0].set_ylabel(metric)
        for j, (_, label) in enumerate(X_AXES):
            axes[i, j].grid(alpha=0.3)
            axes[-1, j].set_xlabel(label)
            axes[i, 1].set_xscale("symlog", linthresh=1.0)
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return common.save_figure(fig, path)


def summary_table(folders: list[Path], threshold: float = 0.5) -> str:
    """A Markdown table of runs grouped by estimator (seeds): per estimator the mean [min, max] over runs of
    the final success rate and return (and held-out success rate where logged), the iterations and
    evaluations of ``f`` done, how many runs reached ``threshold`` success and their median CPU seconds to
    it, and the mean gradient variance (absolute and relative) at each iteration of ``variance.csv``."""
    groups: dict[str, list[tuple[list[dict[str, float]], dict[int, dict[str, float | None]]]]] = {}
    for folder in folders:
        config, rows = read_run(Path(folder))
        groups.setdefault(config["estimator"], []).append((rows, read_variances(Path(folder))))
    checkpoints = sorted({i for runs in groups.values() for _, variances in runs for i in variances})

    def spread(values: list[float]) -> str:
        return f"{statistics.fmean(values):.3g} [{min(values):.3g}, {max(values):.3g}]"

    def mean(measured: list[dict[str, float | None]], key: str) -> float:
        return statistics.fmean(math.nan if m[key] is None else m[key] for m in measured)  # type: ignore[misc]

    columns = ["estimator", "runs", "iterations", "evaluations", "final success_rate", "final return"]
    heldout = all("heldout_success_rate" in rows[0] for runs in groups.values() for rows, _ in runs)
    columns += ["final heldout_success_rate"] if heldout else []
    columns += [f"reached {threshold} (median CPU s)"]
    columns += [f"variance at {i} (relative)" for i in checkpoints]
    table = []
    for name, runs in groups.items():
        finals = [rows[-1] for rows, _ in runs]
        reached = [next((r["train_cpu_s"] for r in rows if r["success_rate"] >= threshold), None) for rows, _ in runs]
        times = [t for t in reached if t is not None]
        line = [name, len(runs)] + [spread([row[key] for row in finals]) for key in ("iteration", "evaluations")]
        line += [spread([row["success_rate"] for row in finals]), spread([row["return"] for row in finals])]
        line += [spread([row["heldout_success_rate"] for row in finals])] if heldout else []
        line += [f"{len(times)}/{len(runs)}" + (f" ({statistics.median(times):.1f})" if times else "")]
        for i in checkpoints:
            measured = [variances[i] for _, variances in runs if i in variances]
            line.append(
                f"{mean(measured, 'variance'):.2e} ({mean(measured, 'relative_variance'):.2g}, {len(measured)} runs)"
                if measured
                else "-"
            )
        table.append(line)
    return common.markdown_table(columns, table)
