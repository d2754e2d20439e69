"""The training loop of ``catlog plan`` and ``catlog generate``: an autoregressive policy against a reward.

A :class:`Task` gives the policy network, its distribution over ``D`` choices of ``K``
for a batch of contexts, the reward ``f`` (the objective ``E_p[f(X)]`` the estimator
differentiates) and the metrics of sampled sequences. :func:`train` runs Adam on
``-mean_B E_p[f]`` with one estimator of the experiments' vocabulary until
``--iterations`` or ``--time-budget`` (process CPU seconds of the training steps,
robust on a shared machine) is reached, and writes into the run folder

- ``log.csv``: every ``--log-every`` iterations: ``iteration``, ``evaluations`` (rows of
  ``f`` per context so far, from ``estimator.cost``), ``cpu_s`` and ``wall_s`` (training
  only) and the task's metrics on ``--eval-samples`` fresh sequences per context
  (e.g. ``success_rate``, ``return``); evaluation is not timed;
- ``variance.csv``: at the iterations of ``--variance-at``, the variance of the policy
  gradient over ``--variance-repeats`` estimates at the current parameters (the trace of
  the covariance over the parameters, :func:`catlog.gradient_variance`)
  and the same divided by the squared norm of their mean (scale-free: GRPO rescales);
- ``checkpoint.pt`` at every log (``--resume`` continues from it exactly);
- ``summary.json`` at the end, and ``curves.png`` with ``--plot``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

import catlog
from catlog.experiments import common, estimators, run_folder
from catlog.experiments.options import OptionError, RunOptions, check_at_least, config_json, option

# Settings a resumed run may change; any other difference from the saved config is refused.
MAY_CHANGE: tuple[str, ...] = ("iterations", "time_budget", "device", "threads", "out", "resume", "overwrite", "plot")
DEFAULT_ITERATIONS = 200


class Task(Protocol):
    """What :func:`train` needs of a problem."""

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


TRAINING_GROUP = "training"


def _training(default: Any, help: str, **spec: Any) -> Any:
    """An option of the ``training`` section of ``--help``."""
    return option(default, help, group=TRAINING_GROUP, **spec)


@dataclass(frozen=True, kw_only=True)
class PolicyTrainingConfig(RunOptions):
    """The training options that ``plan`` and ``generate`` share (each field's help says what it is)."""

    estimator: str = _training(
        "scater",
        "gradient estimator (those that take an autoregressive policy)",
        choices=estimators.AUTOREGRESSIVE,
        metavar="NAME",
    )
    samples: int = _training(1, "N: SCateR's base samples; -s/-f rules scale from it", minimum=1)
    iterations: int | None = _training(
        None, "Adam steps", minimum=0, default_text=f"{DEFAULT_ITERATIONS} if no --time-budget"
    )
    time_budget: float | None = _training(
        None, "CPU seconds of training (evaluation excluded)", above=0, default_text="none"
    )
    lr: float = _training(3e-3, "Adam learning rate", above=0)
    hidden: int = _training(64, "GRU width of the policy", minimum=1)
    log_every: int = _training(10, "iterations between log rows and checkpoints", minimum=1)
    eval_samples: int = _training(256, "fresh sequences per context at each log row", minimum=1)
    variance_at: tuple[int, ...] = _training(
        (0,), "iterations at which the gradient variance is measured (none: no values)", minimum=0, empty=True
    )
    variance_repeats: int = _training(20, "gradient estimates per variance measurement", minimum=2)
    resume: bool = _training(False, "continue the run in --out from its checkpoint.pt")
    plot: bool = _training(False, "also draw curves.png (see `catlog policy-plot`)")

    def __post_init__(self) -> None:
        super().__post_init__()
        family, _ = estimators.parse(self.estimator)
        check_at_least("--samples", self.samples, family.min_size)
        if self.resume and self.out is None:
            raise OptionError("--resume", "expected --out naming the run folder to resume, got none")

    @property
    def max_iterations(self) -> int | None:
        """``--iterations``; :data:`DEFAULT_ITERATIONS` when neither it nor ``--time-budget`` is given."""
        if self.iterations is not None or self.time_budget is not None:
            return self.iterations
        return DEFAULT_ITERATIONS


@dataclass
class TrainState:
    """What a checkpoint holds besides the networks: progress, clocks, the log so far."""

    iteration: int = 0
    evaluations: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    logged_at: int = -1
    rows: list[dict[str, float]] = field(default_factory=list)
    variances: list[dict[str, float | None]] = field(default_factory=list)


def policy_gradient_variance(
    task: Task, policy: torch.nn.Module, estimator: catlog.Estimator, repeats: int, generator: torch.Generator
) -> dict[str, float | None]:
    """``repeats`` estimates of ``grad mean_B E_p[f]`` at the current parameters: the trace of their
    covariance (``variance``) and that over the squared norm of their mean (``relative_variance``; 0 when
    every estimate is zero, ``None`` when only their mean is)."""
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


def _evaluation_generator(seed: int, iteration: int) -> torch.Generator:
    """The fixed stream of the evaluation at ``iteration``: the same for every estimator of one seed."""
    return torch.Generator().manual_seed(1_000_003 * seed + iteration)


def train(config: PolicyTrainingConfig, task: Task, out: Path) -> dict[str, Any]:
    """Train ``task``'s policy as ``config`` says, writing into the open run folder ``out``; returns the summary."""
    common.apply_threads(config.threads)
    torch.manual_seed(config.seed)
    policy = task.policy(config.hidden).to(config.torch_dtype)
    optimiser = torch.optim.Adam(policy.parameters(), lr=config.lr)
    budget = estimators.Budget(config.samples, task.num_variables, task.num_categories, autoregressive=True)
    estimator = estimators.make(config.estimator, budget)
    cost = estimator.cost(task.num_variables, task.num_categories).evaluations
    generator = torch.Generator().manual_seed(config.seed + 1)
    state = TrainState()
    checkpoint = out / run_folder.CHECKPOINT
    if config.resume:
        saved = run_folder.load_checkpoint(checkpoint)
        policy.load_state_dict(saved["policy"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        state = TrainState(**saved["state"])
    clock = common.Clock(wall_s=state.wall_s, cpu_s=state.cpu_s)

    def step() -> None:
        optimiser.zero_grad()
        torch.autograd.backward(-estimator(task.reward, task.distribution(policy), generator=generator).mean())
        optimiser.step()

    def out_of_budget() -> bool:
        limit = config.max_iterations
        return (limit is not None and state.iteration >= limit) or (
            config.time_budget is not None and clock.cpu_s >= config.time_budget
        )

    def log() -> None:
        with torch.no_grad():
            metrics = task.evaluate(policy, config.eval_samples, _evaluation_generator(config.seed, state.iteration))
        row = {
            "iteration": state.iteration,
            "evaluations": state.evaluations,
            "cpu_s": round(clock.cpu_s, 4),
            "wall_s": round(clock.wall_s, 4),
            **metrics,
        }
        state.rows.append(row)
        state.logged_at = state.iteration
        common.write_csv(out / "log.csv", state.rows)
        state.cpu_s, state.wall_s = clock.cpu_s, clock.wall_s
        run_folder.save_checkpoint(
            checkpoint,
            {
                "policy": policy.state_dict(),
                "optimiser": optimiser.state_dict(),
                "generator": generator.get_state(),
                "state": vars(state),
            },
        )
        print(f"iteration {state.iteration}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)

    while True:
        if state.iteration in config.variance_at and not any(
            row["iteration"] == state.iteration for row in state.variances
        ):
            measured = policy_gradient_variance(
                task, policy, estimator, config.variance_repeats, _evaluation_generator(config.seed, state.iteration)
            )
            state.variances.append({"iteration": state.iteration, **measured})
            common.write_csv(out / "variance.csv", state.variances)
        stop = out_of_budget()
        if state.logged_at != state.iteration and (stop or state.iteration % config.log_every == 0):
            log()
        if stop:
            break
        clock.timed(step)
        state.iteration += 1
        state.evaluations += cost
    summary = {
        "estimator": config.estimator,
        "repr": repr(estimator),
        "evaluations_per_iteration": cost,
        "iterations": state.iteration,
        "evaluations": state.evaluations,
        "cpu_s": clock.cpu_s,
        "wall_s": clock.wall_s,
        "final": state.rows[-1],
        "first": state.rows[0],
        "variance": state.variances,
    }
    common.write_json(out / "summary.json", summary)
    if config.plot:
        print(f"plot: {plot_runs([out], out / 'curves.png')}")
    return summary


def run(config: PolicyTrainingConfig, experiment: str, make_task: Callable[[Any], Task]) -> int:
    """Open the run folder of ``config`` (default ``results/<experiment>-<time>``), train ``make_task(config)``."""
    folder = common.default_out(config.out, experiment)
    started = time.perf_counter()
    with run_folder.open_run(
        folder, config_json(config), resume=config.resume, overwrite=config.overwrite, may_change=MAY_CHANGE
    ) as opened:
        summary = train(config, make_task(config), opened.path)
    final = ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items())
    print(f"{experiment} {config.estimator}: {final}; {time.perf_counter() - started:.0f} s in all; wrote {folder}")
    return 0


# The metrics drawn by plot_runs (those a log has), against these x axes.
PLOTTED_METRICS: tuple[str, ...] = ("success_rate", "return", "heldout_success_rate")
X_AXES: tuple[tuple[str, str], ...] = (
    ("iteration", "iteration"),
    ("evaluations", "evaluations of f per context"),
    ("cpu_s", "training CPU seconds"),
)


def read_run(folder: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The config and the log rows (numbers) of a run folder."""
    import csv
    import json

    config = json.loads((folder / run_folder.CONFIG).read_text())
    with open(folder / "log.csv", newline="") as handle:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    return config, rows


def mean_curves(runs: list[list[dict[str, float]]]) -> dict[str, list[float]]:
    """Column-wise means over runs of their first ``min(len)`` log rows (seeds of one estimator)."""
    length = min(len(rows) for rows in runs)
    columns = runs[0][0].keys()
    return {key: [sum(rows[i][key] for rows in runs) / len(runs) for i in range(length)] for key in columns}


def plot_runs(folders: list[Path], path: Path, title: str | None = None) -> Path:
    """Metrics against iterations, evaluations and CPU time; runs of one estimator averaged (seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from catlog.experiments.plotting import line_style

    by_estimator: dict[str, list[list[dict[str, float]]]] = {}
    for folder in folders:
        config, rows = read_run(Path(folder))
        by_estimator.setdefault(config["estimator"], []).append(rows)
    metrics = [m for m in PLOTTED_METRICS if all(m in runs[0][0] for runs in by_estimator.values())]
    fig, axes = plt.subplots(len(metrics), len(X_AXES), figsize=(4 * len(X_AXES), 2.8 * len(metrics)), squeeze=False)
    for name, runs in by_estimator.items():
        curves = mean_curves(runs)
        for i, metric in enumerate(metrics):
            for j, (x, _) in enumerate(X_AXES):
                axes[i, j].plot(curves[x], curves[metric], label=f"{name} ({len(runs)})", **line_style(len(curves[x])))
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


def _read_variances(folder: Path) -> dict[int, dict[str, float]]:
    """``variance.csv`` of a run folder by iteration (empty when the run measured none)."""
    import csv

    path = folder / "variance.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = csv.DictReader(handle)
        return {int(row.pop("iteration")): {k: float(v or "nan") for k, v in row.items()} for row in rows}


def summary_table(folders: list[Path], threshold: float = 0.5) -> str:
    """A Markdown table of runs grouped by estimator (seeds): per estimator the mean [min, max] over runs of
    the final success rate and return (and held-out success rate where logged), the iterations and
    evaluations of ``f`` done, how many runs reached ``threshold`` success and their median CPU seconds to
    it, and the mean gradient variance (absolute and relative) at each iteration of ``variance.csv``."""
    import statistics

    groups: dict[str, list[tuple[list[dict[str, float]], dict[int, dict[str, float]]]]] = {}
    for folder in folders:
        config, rows = read_run(Path(folder))
        groups.setdefault(config["estimator"], []).append((rows, _read_variances(Path(folder))))
    checkpoints = sorted({i for runs in groups.values() for _, variances in runs for i in variances})

    def spread(values: list[float]) -> str:
        return f"{statistics.fmean(values):.3g} [{min(values):.3g}, {max(values):.3g}]"

    columns = ["estimator", "runs", "iterations", "evaluations", "final success_rate", "final return"]
    heldout = all("heldout_success_rate" in rows[0] for runs in groups.values() for rows, _ in runs)
    columns += ["final heldout_success_rate"] if heldout else []
    columns += [f"reached {threshold} (median CPU s)"]
    columns += [f"variance at {i} (relative)" for i in checkpoints]
    table = []
    for name, runs in groups.items():
        finals = [rows[-1] for rows, _ in runs]
        reached = [next((r["cpu_s"] for r in rows if r["success_rate"] >= threshold), None) for rows, _ in runs]
        times = [t for t in reached if t is not None]
        line = [name, len(runs)] + [spread([row[key] for row in finals]) for key in ("iteration", "evaluations")]
        line += [spread([row["success_rate"] for row in finals]), spread([row["return"] for row in finals])]
        line += [spread([row["heldout_success_rate"] for row in finals])] if heldout else []
        line += [f"{len(times)}/{len(runs)}" + (f" ({statistics.median(times):.1f})" if times else "")]
        for i in checkpoints:
            measured = [variances[i] for _, variances in runs if i in variances]
            line.append(
                f"{statistics.fmean(m['variance'] for m in measured):.2e} "
                f"({statistics.fmean(m['relative_variance'] for m in measured):.2g}, {len(measured)} runs)"
                if measured
                else "-"
            )
        table.append(line)
    return common.markdown_table(columns, table)
