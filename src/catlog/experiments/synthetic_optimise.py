"""Optimisation with D = 200 binary variables (paper section 6.2, figure 2): ``catlog optimise``.

Maximise ``E_{X ~ p_theta}[f(X)]``, ``f(x) = 1/D sum_i (x_i - 0.499)^2``, over
logits ``theta: [D, 2]`` that start at zero (``p(X_i = 1) = 0.5``, ``E[f] = 0.250001``).
The optimum, ``X = 1`` surely, is ``(1 - 0.499)^2 = 0.251001``. The expectation is
analytic, ``E[f] = 1/D sum_i [p_i (1 - 0.499)^2 + (1 - p_i) 0.499^2]``, and is
what the logs report. The optimiser, RMSprop as Keras has it (``rho = 0.9``,
``eps = 1e-7`` inside the square root, no momentum: :class:`KerasRMSprop`),
minimises ``-estimate``.

Methods (the paper's hyper-parameters, ``N`` = IndeCateR's samples, ``K = 2``):
IndeCateR ``N = 2``, lr 5; RLOO-F ``D*K*N = 800`` samples, lr 5; RLOO-S ``N``
samples, lr 1; GS-F ``D*K*N`` samples, lr 0.01, straight-through Gumbel-Softmax
at temperature 0.1 multiplied by ``exp(-0.05)`` every 20 iterations.

Logged every ``--log-every`` iterations: ``E[f]`` and the cumulative wall and
CPU time of the gradient computations (estimate and backward pass; not the
optimiser step, not the logging). Every ``--variance-every`` iterations the
estimator's variance at the current parameters: ``R = --variance-repeats``
independent estimates of ``grad_theta E[f]`` (batch elements: copies of the
logits, one call), ``mean_i Var_r g_ri`` over the ``2 D`` logits.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import catlog
from catlog.experiments import common
from catlog.experiments.keras_rmsprop import KerasRMSprop

OFFSET = 0.499
OPTIMUM = (1 - OFFSET) ** 2
NUM_CATEGORIES = 2
METHODS: tuple[str, ...] = ("indecater", "rloo-f", "rloo-s", "gs-f")
LABELS: dict[str, str] = {"indecater": "IndeCateR", "rloo-f": "RLOO-F", "rloo-s": "RLOO-S", "gs-f": "GS-F"}
LOG_COLUMNS: tuple[str, ...] = (
    "method",
    "seed",
    "iteration",
    "expected_f",
    "grad_wall_s",
    "grad_cpu_s",
    "variance",
    "temperature",
)
GAP_FRACTION = 0.9
REPEAT_ELEMENTS = 2**22


def objective(x: torch.Tensor) -> torch.Tensor:
    """``f(x) = 1/D sum_i (x_i - 0.499)^2`` for ``x: [M, *B, D]`` (indices or relaxed values); returns ``[M, *B]``."""
    return (x - OFFSET).square().mean(-1)


def expected_value(logits: torch.Tensor) -> torch.Tensor:
    """Exact ``E[f(X)]`` for ``logits: [*B, D, 2]``: ``1/D sum_i [p_i (1 - c)^2 + (1 - p_i) c^2]``, ``c = 0.499``."""
    p = logits.softmax(-1)[..., 1]
    return (p * (1 - OFFSET) ** 2 + (1 - p) * OFFSET**2).mean(-1)


@dataclass(frozen=True)
class Method:
    """One curve of figure 2: an estimator and its learning rate.

    Attributes:
        name: one of :data:`METHODS`.
        samples: samples per estimate.
        lr: RMSprop learning rate.
        temperature: initial Gumbel-Softmax temperature (``None`` for the others).
        anneal_every, anneal_factor: multiply the temperature by ``anneal_factor`` every
            ``anneal_every`` iterations.
    """

    name: str
    samples: int
    lr: float
    temperature: float | None = None
    anneal_every: int = 20
    anneal_factor: float = math.exp(-0.05)

    def estimator(self) -> catlog.Estimator:
        """A fresh estimator (Gumbel-Softmax at its initial temperature)."""
        if self.name == "indecater":
            return catlog.IndeCateR(self.samples)
        if self.name.startswith("rloo"):
            return catlog.RLOO(self.samples)
        return catlog.GumbelSoftmax(self.samples, temperature=self.temperature, straight_through=True)


def paper_methods(num_variables: int, indecater_samples: int = 2) -> dict[str, Method]:
    """The paper's four methods; ``-F`` methods take ``D * K * N`` samples (800 for ``D = 200, N = 2``)."""
    matched = num_variables * NUM_CATEGORIES * indecater_samples
    return {
        "indecater": Method("indecater", indecater_samples, 5.0),
        "rloo-f": Method("rloo-f", matched, 5.0),
        "rloo-s": Method("rloo-s", indecater_samples, 1.0),
        "gs-f": Method("gs-f", matched, 0.01, temperature=0.1),
    }


def estimator_variance(
    estimator: catlog.Estimator, logits: torch.Tensor, repeats: int, generator: torch.Generator
) -> float:
    """``mean_i Var_r g_ri`` of ``repeats`` independent gradients of ``E[f]`` at ``logits: [D, K]``.

    The repeats are batch elements of ``[R, D, K]`` copies of the logits, in calls of at most
    about :data:`REPEAT_ELEMENTS` sampled entries (samples x copies x ``D*K``) each.
    """
    per_call = max(1, REPEAT_ELEMENTS // (getattr(estimator, "num_samples", 1) * logits.numel()))
    _, (gradients,) = common.repeated_gradients(
        estimator, objective, logits, repeats, per_call, generator, [lambda value: value]
    )
    return common.gradient_variance(gradients)


def optimise(
    method: Method,
    num_variables: int,
    iterations: int,
    seed: int,
    options: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    bar: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One run of ``method`` from zero logits; returns ``(log rows, summary)``.

    The summary holds the first iteration at which ``E[f]`` closes
    :data:`GAP_FRACTION` of the gap from its start to :data:`OPTIMUM`, and the
    cumulative gradient wall and CPU seconds at that iteration (``None`` if never).
    """
    estimator = method.estimator()
    logits = torch.zeros(num_variables, NUM_CATEGORIES, device=device, dtype=dtype, requires_grad=True)
    optimiser = KerasRMSprop([logits], lr=method.lr, rho=0.9, eps=1e-7)
    train_generator = torch.Generator(device=device).manual_seed(2 * seed)
    variance_generator = torch.Generator(device=device).manual_seed(2 * seed + 1)
    clock = common.Clock(device)
    start = float(expected_value(logits.detach()))
    target = start + GAP_FRACTION * (OPTIMUM - start)
    reached: dict[str, Any] = {"iterations": None, "wall_s": None, "cpu_s": None}

    def gradient_step() -> None:
        optimiser.zero_grad(set_to_none=True)
        (-estimator(objective, logits, generator=train_generator)).backward()

    rows = []
    for iteration in range(iterations + 1):
        value = float(expected_value(logits.detach()))
        if reached["iterations"] is None and value >= target:
            reached = {"iterations": iteration, "wall_s": clock.wall_s, "cpu_s": clock.cpu_s}
        if iteration % options.log_every == 0 or iteration == iterations:
            measure = iteration % options.variance_every == 0 or iteration == iterations
            rows.append(
                {
                    "method": method.name,
                    "seed": seed,
                    "iteration": iteration,
                    "expected_f": value,
                    "grad_wall_s": clock.wall_s,
                    "grad_cpu_s": clock.cpu_s,
                    "variance": (
                        estimator_variance(estimator, logits, options.variance_repeats, variance_generator)
                        if measure
                        else None
                    ),
                    "temperature": getattr(estimator, "temperature", None),
                }
            )
        if iteration == iterations:
            break
        clock.timed(gradient_step)
        optimiser.step()
        if method.temperature is not None and (iteration + 1) % method.anneal_every == 0:
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
    """Per method: seeds, median iterations / wall / CPU seconds to close 90% of the gap, final ``E[f]``."""
    table = []
    for name in methods:
        runs = [run for run in summaries if run["method"] == name]
        if not runs:
            continue
        finals = np.array([run["final_f"] for run in runs])
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
                "total_wall_s_mean": float(np.mean([run["total_wall_s"] for run in runs])),
                "total_cpu_s_mean": float(np.mean([run["total_cpu_s"] for run in runs])),
            }
        )
    return table


def format_table(table: Sequence[dict[str, Any]], methods: dict[str, Method]) -> str:
    """A plain-text table of :func:`summarise`'s rows."""

    def show(value: float | None, spec: str) -> str:
        return "never" if value is None else format(value, spec)

    header = (
        f"{'method':<10}{'samples':>8}{'lr':>6}{'reached':>9}{'med it':>8}{'med wall s':>11}{'med cpu s':>10}"
        f"{'final E[f]':>12}{'+- se':>10}{'wall s/run':>11}"
    )
    lines = [f"iterations and gradient seconds to close {GAP_FRACTION:.0%} of the gap to {OPTIMUM:.6f}", header]
    lines.append("-" * len(header))
    for row in table:
        method = methods[row["method"]]
        lines.append(
            f"{LABELS[row['method']]:<10}{method.samples:>8}{method.lr:>6g}{row['reached']:>5}/{row['seeds']:<3}"
            f"{show(row['median_iterations'], '.0f'):>8}{show(row['median_wall_s'], '.3f'):>11}"
            f"{show(row['median_cpu_s'], '.3f'):>10}{row['final_f_mean']:>12.6f}{row['final_f_se']:>10.2e}"
            f"{row['total_wall_s_mean']:>11.2f}"
        )
    return "\n".join(lines)


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
    """Figure 2: ``E[f]`` against iterations and gradient wall time, variance against iterations.

    Bands are +- one standard error over seeds; on the logarithmic variance axis the
    lower band is clipped at a tenth of the mean, and zero variances are not drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in methods:
        iterations, f_mean, f_se = mean_and_se(rows, name, "expected_f")
        if iterations.size == 0:
            continue
        _, time_mean, _ = mean_and_se(rows, name, "grad_wall_s")
        var_iterations, var_mean, var_se = mean_and_se(rows, name, "variance")
        for ax, x, y, se in (
            (axes[0], iterations, f_mean, f_se),
            (axes[1], time_mean, f_mean, f_se),
            (axes[2], var_iterations, var_mean, var_se),
        ):
            (line,) = ax.plot(x, y, label=LABELS[name])
            lower = np.maximum(y - se, y / 10) if ax is axes[2] else y - se
            ax.fill_between(x, lower, y + se, color=line.get_color(), alpha=0.25)
    for ax in axes[:2]:
        ax.axhline(OPTIMUM, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("E[f]")
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("gradient wall time (s), mean over seeds")
    axes[1].set_xscale("symlog", linthresh=1e-2)
    axes[1].set_xlim(left=0)
    axes[2].set_xlabel("iteration")
    axes[2].set_ylabel("estimator variance, mean_i Var(g_i)")
    axes[2].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    return common.save_figure(fig, path)


def write_results(
    out: Path,
    rows: Sequence[dict[str, Any]],
    summaries: Sequence[dict[str, Any]],
    methods: dict[str, Method],
    options: argparse.Namespace,
    figure: bool,
) -> list[dict[str, Any]]:
    """Write the log CSV, summary JSON and text of the runs so far, and figure 2 if ``figure``.

    Returns the summary table.
    """
    table = summarise(summaries, options.methods)
    settings = {key: value for key, value in vars(options).items() if key not in ("func", "out")}
    common.write_csv(out / "optimise_log.csv", rows, LOG_COLUMNS)
    common.write_json(
        out / "optimise.json",
        {
            "settings": settings,
            "methods": {name: vars(methods[name]) for name in options.methods},
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


def run_optimise(options: argparse.Namespace) -> tuple[Path, list[dict[str, Any]], dict[str, Method]]:
    """Every seed of every method; returns ``(folder, summary table, methods)``.

    Seeds are the outer loop and the log and summaries are rewritten after each seed,
    so a run stopped early leaves complete results for the seeds it finished;
    figure 2 is drawn at the end.
    """
    device, dtype = common.apply_common_options(options)
    out = common.output_dir(options.out, "optimise")
    methods = paper_methods(options.num_variables, options.indecater_samples)
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    total = len(options.methods) * options.seeds * options.iterations
    with common.progress(total=total, desc="optimise", leave=True) as bar:
        for seed in range(options.seed, options.seed + options.seeds):
            for name in options.methods:
                bar.set_postfix_str(f"seed {seed} {name}")
                run_rows, summary = optimise(
                    methods[name], options.num_variables, options.iterations, seed, options, device, dtype, bar
                )
                rows += run_rows
                summaries.append(summary)
            last = seed == options.seed + options.seeds - 1
            table = write_results(out, rows, summaries, methods, options, figure=last)
    return out, table, methods


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog optimise`` (without the common ones)."""
    parser.add_argument("--iterations", type=int, default=2000, help="RMSprop steps per run (default: 2000)")
    parser.add_argument(
        "--seeds", type=int, default=10, help="runs per method, seeds --seed .. --seed + SEEDS - 1 (default: 10)"
    )
    parser.add_argument("--num-variables", type=int, default=200, help="D, binary variables (default: 200)")
    parser.add_argument(
        "--indecater-samples",
        type=int,
        default=2,
        help="N, IndeCateR's and RLOO-S's samples; RLOO-F and GS-F take D*2*N (default: 2)",
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run (default: all)"
    )
    parser.add_argument(
        "--log-every", type=int, default=5, help="log E[f] and time every this many iterations (default: 5)"
    )
    parser.add_argument(
        "--variance-every",
        type=int,
        default=50,
        help="measure the estimator variance every this many iterations (default: 50)",
    )
    parser.add_argument(
        "--variance-repeats",
        type=int,
        default=20,
        help="R, independent estimates per variance measurement (default: 20)",
    )


def check_options(options: argparse.Namespace) -> None:
    """Raise ``ValueError`` for settings that cannot work."""
    for name in ("iterations", "seeds", "num_variables", "indecater_samples", "log_every", "variance_every"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(options, name)}")
    if options.variance_repeats < 2:
        raise ValueError(f"--variance-repeats: expected at least 2, got {options.variance_repeats}")
    if options.indecater_samples < 2 and "rloo-s" in options.methods:
        raise ValueError(f"--indecater-samples: expected at least 2 when RLOO-S runs, got {options.indecater_samples}")
    if options.variance_every % options.log_every:
        raise ValueError(
            f"--variance-every: expected a multiple of --log-every ({options.log_every}), got {options.variance_every}"
        )


def main(options: argparse.Namespace) -> int:
    """``catlog optimise``: run, print the summary and where the files went."""
    check_options(options)
    out, table, methods = run_optimise(options)
    print("\n" + format_table(table, methods))
    print(f"\nresults in {out}/ (optimise_log.csv, optimise.json, fig2_optimise.png)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``catlog optimise``."""
    common.add_subcommand(
        subparsers,
        "optimise",
        help="figure 2: maximise E[mean_i (X_i - 0.499)^2] over 200 binary variables",
        description=__doc__,
        add_options=add_options,
        func=main,
    )
