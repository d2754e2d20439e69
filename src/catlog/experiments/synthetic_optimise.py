"""Optimisation with D = 200 binary variables (paper section 6.2, figure 2): ``catlog optimise``.

Maximise ``E[f(X)]``, ``f(x) = 1/D sum_i (x_i - 0.499)^2``, over logits ``theta: [D, 2]``
from ``N(0, 1)`` (:mod:`catlog.experiments.problems.binary`; every method starts a seed from
the same draw) with RMSprop as Keras has it (:class:`~catlog.experiments.keras.KerasRMSprop`),
minimising ``-estimate``. ``E[f]`` is analytic, and is what the logs report.

Methods (the paper's hyper-parameters, ``N = --samples``, ``K = 2``): ``indecater``, lr 5;
``rloo-f`` (``D*K*N`` samples), lr 5; ``rloo-s`` (``N`` samples), lr 1; ``gs-st-f``
(``D*K*N`` samples), lr 0.01, straight-through Gumbel-Softmax at temperature 0.1 multiplied
by ``exp(-0.05)`` every 20 iterations.

Logged every ``--log-every`` iterations: ``E[f]`` and the cumulative wall and CPU time of the
gradient computations (estimate and backward pass). Every ``--variance-every`` iterations the
estimator's variance at the current parameters, ``mean_i Var_r g_ri`` over ``R =
--variance-repeats`` estimates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import catlog
from catlog.experiments import common, estimators, plotting, run_folder
from catlog.experiments.keras import KerasRMSprop
from catlog.experiments.options import Command, RunOptions, check_at_least, check_multiple, config_json, option
from catlog.experiments.problems import logits_problem, variance_per_entry
from catlog.experiments.problems.binary import NUM_CATEGORIES, OPTIMUM, expected_value, objective, start_logits

METHODS: tuple[str, ...] = ("indecater", "rloo-f", "rloo-s", "gs-st-f")
GAP_FRACTION = 0.9


@dataclass(frozen=True)
class Method:
    """One curve of figure 2: an estimator of the vocabulary (``name``), its ``budget`` (``N``, ``D``,
    ``K = 2``, the initial Gumbel-Softmax temperature), its RMSprop ``lr``; a Gumbel-Softmax temperature
    is multiplied by ``anneal_factor`` every ``anneal_every`` iterations."""

    name: str
    lr: float
    budget: estimators.Budget
    anneal_every: int = 20
    anneal_factor: float = math.exp(-0.05)

    @property
    def samples(self) -> int:
        """The samples one estimate draws."""
        return self.estimator().cost(self.budget.num_variables, self.budget.num_categories).samples

    def estimator(self) -> catlog.Estimator:
        """A fresh estimator (Gumbel-Softmax at its initial temperature)."""
        return estimators.make(self.name, self.budget)


def paper_methods(num_variables: int, samples: int = 2) -> dict[str, Method]:
    """The paper's four methods with ``N = samples`` (``-f``: ``D * K * N`` samples, 800 for ``D = 200, N = 2``)."""
    budget = estimators.Budget(samples, num_variables, NUM_CATEGORIES)
    return {
        "indecater": Method("indecater", 5.0, budget),
        "rloo-f": Method("rloo-f", 5.0, budget),
        "rloo-s": Method("rloo-s", 1.0, budget),
        "gs-st-f": Method("gs-st-f", 0.01, dataclasses.replace(budget, temperature=0.1)),
    }


@dataclass(frozen=True, kw_only=True)
class OptimiseConfig(RunOptions):
    """Settings of ``catlog optimise``."""

    iterations: int = option(2000, "RMSprop steps per run", minimum=1)
    seeds: int = option(10, "runs per method, seeds --seed .. --seed + SEEDS - 1", minimum=1)
    num_variables: int = option(200, "D, binary variables", minimum=1)
    samples: int = option(2, "N: samples of indecater and rloo-s; rloo-f and gs-st-f take D*2*N", minimum=1)
    methods: tuple[str, ...] = option(METHODS, "methods to run", choices=METHODS)
    log_every: int = option(5, "log E[f] and time every this many iterations", minimum=1)
    variance_every: int = option(50, "measure the estimator variance every this many iterations", minimum=1)
    variance_repeats: int = option(20, "R, independent estimates per variance measurement", minimum=2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if "rloo-s" in self.methods:
            check_at_least("--samples", self.samples, 2)
        check_multiple("--variance-every", self.variance_every, "--log-every", self.log_every)


def optimise(
    method: Method, seed: int, options: OptimiseConfig, bar: Any = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One run of ``method`` from :func:`start_logits` for ``options.iterations`` steps: ``(log rows, summary)``.

    The summary holds the first iteration at which ``E[f]`` closes :data:`GAP_FRACTION` of the gap
    from its start to :data:`OPTIMUM`, and the gradient wall and CPU seconds until then (``None`` if never).
    """
    estimator = method.estimator()
    device, iterations = torch.device(options.device), options.iterations
    logits = start_logits(options.num_variables, seed).to(device, options.torch_dtype).requires_grad_()
    optimiser = KerasRMSprop([logits], lr=method.lr, rho=0.9, eps=1e-7)
    train_generator = torch.Generator(device=device).manual_seed(2 * seed)
    variance_generator = torch.Generator(device=device).manual_seed(2 * seed + 1)
    clock = common.Clock(device)
    start = float(expected_value(logits.detach()))
    target = start + GAP_FRACTION * (OPTIMUM - start)
    reached: dict[str, Any] = {"iterations": None, "wall_s": None, "cpu_s": None}

    def gradient_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(-estimator(objective, logits, generator=train_generator))

    rows = []
    for iteration in range(iterations + 1):
        value = float(expected_value(logits.detach()))
        if reached["iterations"] is None and value >= target:
            reached = {"iterations": iteration, "wall_s": clock.wall_s, "cpu_s": clock.cpu_s}
        if iteration % options.log_every == 0 or iteration == iterations:
            variance = None
            if iteration % options.variance_every == 0 or iteration == iterations:
                # figure 2's problem at the current logits, batched on copies of them
                problem = logits_problem("fig2", "figure 2", logits, objective, relaxable=True)
                variance = variance_per_entry(
                    problem.gradients(estimator, options.variance_repeats, variance_generator)
                )
            rows.append(
                {
                    "method": method.name,
                    "seed": seed,
                    "iteration": iteration,
                    "expected_f": value,
                    "grad_wall_s": clock.wall_s,
                    "grad_cpu_s": clock.cpu_s,
                    "variance": variance,
                    "temperature": estimator.temperature if isinstance(estimator, catlog.Relaxed) else None,
                }
            )
        if iteration == iterations:
            break
        clock.timed(gradient_step)
        optimiser.step()
        if isinstance(estimator, catlog.Relaxed) and (iteration + 1) % method.anneal_every == 0:
            estimator.temperature *= method.anneal_factor
        if bar is not None:
            bar.update()
    summary = {
        "method": method.name,
        "seed": seed,
        "start_f": start,
        "final_f": rows[-1]["expected_f"],
        "target_f": target,
        **{f"reached_{key}": value for key, value in reached.items()},
        "total_wall_s": clock.wall_s,
        "total_cpu_s": clock.cpu_s,
    }
    return rows, summary


def median_or_none(values: Sequence[float | None]) -> float | None:
    """Median with ``None`` (never reached) counted as infinite; ``None`` if the median is infinite."""
    median = float(np.median([math.inf if value is None else value for value in values]))
    return None if math.isinf(median) else median


def summarise(summaries: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: seeds, median iterations / wall / CPU seconds to close 90% of the gap, final ``E[f]``,
    and the share of the gap from the start to :data:`OPTIMUM` closed at the end."""
    table = []
    for name in methods:
        runs = [run for run in summaries if run["method"] == name]
        if not runs:
            continue
        finals = np.array([run["final_f"] for run in runs])
        closed = np.array([(run["final_f"] - run["start_f"]) / (OPTIMUM - run["start_f"]) for run in runs])
        table.append(
            {
                "method": name,
                "seeds": len(runs),
                "reached": sum(run["reached_iterations"] is not None for run in runs),
                "median_iterations": median_or_none([run["reached_iterations"] for run in runs]),
                "median_wall_s": median_or_none([run["reached_wall_s"] for run in runs]),
                "median_cpu_s": median_or_none([run["reached_cpu_s"] for run in runs]),
                "final_f_mean": float(finals.mean()),
                "final_f_se": float(finals.std(ddof=1) / math.sqrt(len(runs))) if len(runs) > 1 else 0.0,
                "start_f_mean": float(np.mean([run["start_f"] for run in runs])),
                "gap_closed_mean": float(closed.mean()),
                "total_wall_s_mean": float(np.mean([run["total_wall_s"] for run in runs])),
                "total_cpu_s_mean": float(np.mean([run["total_cpu_s"] for run in runs])),
            }
        )
    return table


def summary_table(
    title: str, columns: str, table: Sequence[dict[str, Any]], methods: dict[str, Method], cells: Callable[..., str]
) -> str:
    """A plain-text table of :func:`summarise`'s rows: ``title``, then per method its name, samples and
    learning rate, then ``columns`` (the header) and ``cells(row)`` (its values)."""
    header = f"{'method':<10}{'samples':>8}{'lr':>6}{columns}"
    lines = [title, header, "-" * len(header)]
    for row in table:
        method = methods[row["method"]]
        lines.append(f"{row['method']:<10}{method.samples:>8}{method.lr:>6g}{cells(row)}")
    return "\n".join(lines)


def format_table(table: Sequence[dict[str, Any]], methods: dict[str, Method]) -> str:
    """:func:`summary_table` of the iterations and seconds to close :data:`GAP_FRACTION` of the gap."""

    def show(value: float | None, spec: str) -> str:
        return "never" if value is None else format(value, spec)

    def cells(row: dict[str, Any]) -> str:
        return (
            f"{row['reached']:>5}/{row['seeds']:<3}"
            f"{show(row['median_iterations'], '.0f'):>8}{show(row['median_wall_s'], '.3f'):>11}"
            f"{show(row['median_cpu_s'], '.3f'):>10}{row['final_f_mean']:>12.6f}{row['final_f_se']:>10.2e}"
            f"{row['total_wall_s_mean']:>11.2f}"
        )

    title = f"iterations and gradient seconds to close {GAP_FRACTION:.0%} of the gap to {OPTIMUM:.6f}"
    columns = f"{'reached':>9}{'med it':>8}{'med wall s':>11}{'med cpu s':>10}{'final E[f]':>12}{'+- se':>10}"
    return summary_table(title, columns + f"{'wall s/run':>11}", table, methods, cells)


def format_progress(table: Sequence[dict[str, Any]], methods: dict[str, Method], iterations: int) -> str:
    """:func:`summary_table` for a short run: where ``E[f]`` started, where it ended, and the share of
    the gap to :data:`OPTIMUM` each method closed in ``iterations`` iterations."""

    def cells(row: dict[str, Any]) -> str:
        return (
            f"{row['start_f_mean']:>12.6f}{row['final_f_mean']:>12.6f}{row['final_f_se']:>10.2e}"
            f"{row['gap_closed_mean']:>12.1%}{row['total_wall_s_mean']:>11.2f}"
        )

    title = f"E[f] after {iterations} iterations, from its start towards the optimum {OPTIMUM:.6f}"
    columns = f"{'start E[f]':>12}{'final E[f]':>12}{'+- se':>10}{'gap closed':>12}{'wall s/run':>11}"
    return summary_table(title, columns, table, methods, cells)


def mean_and_se(rows: Sequence[dict[str, Any]], method: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(iterations, mean over seeds, standard error)`` of ``key`` for ``method``, where ``key`` was logged."""
    kept = [row for row in rows if row["method"] == method and row[key] is not None]
    iterations = np.array(sorted({row["iteration"] for row in kept}))
    seeds = sorted({row["seed"] for row in kept})
    grid = np.full((len(seeds), len(iterations)), np.nan)
    for row in kept:
        grid[seeds.index(row["seed"]), np.searchsorted(iterations, row["iteration"])] = row[key]
    mean = np.nanmean(grid, 0)
    count = np.sum(~np.isnan(grid), 0)
    se = np.nanstd(grid, 0, ddof=1) / np.sqrt(count) if len(seeds) > 1 else np.zeros_like(mean)
    return iterations, mean, se


def plot_figure(rows: Sequence[dict[str, Any]], methods: Sequence[str], path: Path) -> Path:
    """Figure 2: ``E[f]`` against iterations and gradient CPU time (not wall time: on a shared machine
    the wall clock counts the other processes too), variance against iterations.

    Bands are +- one standard error over seeds; on the logarithmic variance axis the
    lower band is clipped at a tenth of the mean, and zero variances are not drawn.
    """
    fig, axes = plotting.subplots(1, 3, figsize=(15, 4))
    for name in methods:
        iterations, f_mean, f_se = mean_and_se(rows, name, "expected_f")
        if iterations.size == 0:
            continue
        _, time_mean, _ = mean_and_se(rows, name, "grad_cpu_s")
        var_iterations, var_mean, var_se = mean_and_se(rows, name, "variance")
        for ax, x, y, se in (
            (axes[0], iterations, f_mean, f_se),
            (axes[1], time_mean, f_mean, f_se),
            (axes[2], var_iterations, var_mean, var_se),
        ):
            (line,) = ax.plot(x, y, label=name, **plotting.line_style(len(x)))
            lower = np.maximum(y - se, y / 10) if ax is axes[2] else y - se
            ax.fill_between(x, lower, y + se, color=line.get_color(), alpha=0.25)
    for ax in axes[:2]:
        ax.axhline(OPTIMUM, color="grey", linestyle=":", linewidth=1, label=f"optimum {OPTIMUM:.6f}")
        ax.set_ylabel("E[f]")
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("gradient CPU time (s), mean over seeds")
    axes[1].set_xscale("symlog", linthresh=1e-2)
    axes[1].set_xlim(left=0)
    axes[2].set(xlabel="iteration", ylabel="estimator variance, mean_i Var(g_i)", yscale="log")
    axes[0].legend()
    fig.tight_layout()
    return common.save_figure(fig, path)


def write_results(
    out: Path,
    rows: Sequence[dict[str, Any]],
    summaries: Sequence[dict[str, Any]],
    methods: dict[str, Method],
    options: OptimiseConfig,
    figure: bool,
) -> list[dict[str, Any]]:
    """Write the log CSV, summary JSON and text of the runs so far, and figure 2 if ``figure``;
    returns the summary table."""
    table = summarise(summaries, options.methods)
    settings = config_json(options)
    common.write_csv(out / "optimise_log.csv", rows)
    common.write_json(
        out / "optimise.json",
        {
            "settings": settings,
            "methods": {name: dataclasses.asdict(methods[name]) for name in options.methods},
            "optimum": OPTIMUM,
            "seeds_done": len({run["seed"] for run in summaries}),
            "summary": table,
            "runs": list(summaries),
        },
    )
    common.write_text(out / "optimise.txt", format_table(table, methods) + "\n")
    if figure:
        plot_figure(rows, options.methods, out / "fig2_optimise.png")
    return table


def main(options: OptimiseConfig) -> int:
    """``catlog optimise``: every seed of every method, then the summary printed.

    Seeds are the outer loop and the results are rewritten after each seed, so a run stopped
    early leaves complete results for the seeds it finished; figure 2 is drawn at the end. The
    summary is the share of the gap to the optimum each method closed (:func:`format_progress`)
    and, where some run closed :data:`GAP_FRACTION` of it, the iterations and seconds it took.
    """
    methods = paper_methods(options.num_variables, options.samples)
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    with run_folder.open_command_run(options, "optimise") as run:
        total = len(options.methods) * options.seeds * options.iterations
        with common.progress(total=total, desc="optimise", leave=True) as bar:
            for seed in range(options.seed, options.seed + options.seeds):
                for name in options.methods:
                    bar.set_postfix_str(f"seed {seed} {name}")
                    run_rows, summary = optimise(methods[name], seed, options, bar)
                    rows += run_rows
                    summaries.append(summary)
                last = seed == options.seed + options.seeds - 1
                table = write_results(run.path, rows, summaries, methods, options, figure=last)
    print("\n" + format_progress(table, methods, options.iterations))
    if any(row["reached"] for row in table):
        print("\n" + format_table(table, methods))
    else:
        print(f"(the time to close {GAP_FRACTION:.0%} of the gap is reported once runs are long enough to close it)")
    print(f"\nresults in {run.path}/ (optimise_log.csv, optimise.json, fig2_optimise.png)")
    return 0


COMMAND = Command(
    "optimise",
    help="figure 2: maximise E[mean_i (X_i - 0.499)^2] over 200 binary variables",
    description=__doc__ or "",
    config=OptimiseConfig,
    run=main,
)
