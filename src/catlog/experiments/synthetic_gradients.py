"""Exact-gradient comparison (paper section 6.1, figure 1): ``catlog gradients``.

The problem is :mod:`catlog.experiments.problems.figure1`: ``D`` categorical variables of ``K``
categories, logits ``theta ~ N(0, 1)``, a target ``b ~ p_theta``, and ``f(x) = sum_d |x_d - b_d|``
(``separable``, the paper's eq. 6.1) or its square over ``D`` (``nonseparable``: IndeCateR is no
longer exact with one sample). Per estimator, ``runs`` separately timed estimates of
``grad_theta E[f(X)]`` against the exact gradient (enumeration, float64) give the paper's bias
``mean_r (1 - cos(g_r, g*))`` and variance ``Var_r cos(g_r, g*)``, :mod:`catlog.measure`'s
squared bias (with its noise floor) and variance summed over coordinates, the samples and
evaluations of ``f`` per estimate, and the median wall and CPU time of one estimate.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import catlog
from catlog.experiments import common, estimators, plotting, run_folder
from catlog.experiments.options import (
    Command,
    RunOptions,
    check_applies,
    check_at_least,
    config_json,
    option,
    parse_size,
    show_size,
)
from catlog.experiments.problems import Problem, figure1

CONFIGS: tuple[tuple[int, int], ...] = ((12, 3), (6, 10), (3, 100))
ESTIMATORS: tuple[str, ...] = ("indecater", "reinforce-s", "rloo-s", "gs-st-s")


@dataclass(frozen=True, kw_only=True)
class GradientsConfig(RunOptions):
    """Settings of ``catlog gradients``."""

    configs: tuple[tuple[int, int], ...] = option(
        CONFIGS, "problem sizes: D variables with K categories each", parse=parse_size, show=show_size, metavar="DxK"
    )
    f: str = option(
        "separable",
        "separable: f(x) = sum_d |x_d - b_d| (the paper's; IndeCateR is exact on it); "
        "nonseparable: f(x) = (sum_d |x_d - b_d|)^2 / D",
        choices=figure1.OBJECTIVES,
    )
    runs: int = option(1000, "repeated estimates per estimator", minimum=2)
    samples: int = option(1000, "N of the baselines (-s: N samples, -f: D*K*N samples)", minimum=1)
    indecater_samples: int = option(1, "N of indecater and indecater-pv", minimum=1)
    temperature: float = option(1.0, "Gumbel-Softmax temperature", above=0)
    estimators: tuple[str, ...] = option(
        ESTIMATORS, "estimators to compare (names below)", choices=estimators.NAMES, metavar="NAME"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(n.startswith("rloo") for n in self.estimators):
            check_at_least("--samples", self.samples, 2)
        for name in self.estimators:
            for num_variables, num_categories in self.configs:
                estimator = self.estimator(name, num_variables, num_categories)
                check_applies("--estimators", name, estimator, num_variables, num_categories)

    def estimator(self, name: str, num_variables: int, num_categories: int) -> catlog.Estimator:
        """Estimator ``name`` on ``D x K``: IndeCateR with ``--indecater-samples``, baselines with ``--samples``
        as ``N``."""
        samples = self.samples if estimators.parse(name)[0].rules else self.indecater_samples
        return estimators.make(name, estimators.Budget(samples, num_variables, num_categories, self.temperature))


def repeated_estimates(
    estimator: catlog.Estimator, problem: Problem, runs: int, seed: int, device: torch.device, label: str = ""
) -> tuple[torch.Tensor, list[float], list[float]]:
    """``runs`` independent gradient estimates, each one separately timed call of ``problem.gradient``
    (value and backward pass): ``(gradients [runs, D * K], wall seconds [runs], CPU seconds [runs])``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    clock = common.Clock(device)
    gradients, wall, cpu = [], [], []
    for _ in common.progress(range(runs), desc=label):
        gradients.append(clock.timed(lambda: problem.gradient(estimator, generator)))
        wall.append(clock.last_wall_s)
        cpu.append(clock.last_cpu_s)
    return torch.stack(gradients), wall, cpu


def error_statistics(gradients: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Bias and variance of estimates ``gradients: [R, P]`` against ``exact: [P]`` (float64).

    Returns the paper's ``bias_cos = mean(1 - cos)`` and ``variance_cos = Var(cos)``, and
    :mod:`catlog.measure`'s ``sq_bias_sum`` (:func:`catlog.squared_bias`), ``sq_bias_floor``
    (:func:`catlog.squared_bias_floor`) and ``variance_sum`` (:func:`catlog.gradient_variance`).
    """
    gradients, exact = gradients.double(), exact.double()
    cosine = torch.nn.functional.cosine_similarity(gradients, exact.expand_as(gradients), dim=-1, eps=1e-300)
    return {
        "bias_cos": float((1 - cosine).mean()),
        "variance_cos": float(cosine.var()),
        "sq_bias_sum": catlog.squared_bias(gradients, exact),
        "sq_bias_floor": catlog.squared_bias_floor(gradients),
        "variance_sum": catlog.gradient_variance(gradients),
    }


def compare_config(num_variables: int, num_categories: int, options: GradientsConfig) -> list[dict[str, Any]]:
    """One table: every estimator of ``options.estimators`` on one ``(D, K)`` problem."""
    device, dtype = torch.device(options.device), options.torch_dtype
    problem = figure1.problem(num_variables, num_categories, options.f, options.seed, device, dtype)
    assert problem.exact is not None
    rows = []
    for index, name in enumerate(options.estimators):
        estimator = options.estimator(name, num_variables, num_categories)
        cost = estimator.cost(num_variables, num_categories)
        label = f"{num_variables}x{num_categories} {name}"
        gradients, wall, cpu = repeated_estimates(
            estimator, problem, options.runs, options.seed + 1 + index, device, label
        )
        rows.append(
            {
                "objective": options.f,
                "num_variables": num_variables,
                "num_categories": num_categories,
                "estimator": name,
                "samples": cost.samples,
                "evaluations": cost.evaluations,
                "runs": options.runs,
                **error_statistics(gradients, problem.exact),
                "median_wall_ms": 1e3 * statistics.median(wall),
                "median_cpu_ms": 1e3 * statistics.median(cpu),
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of one config's rows."""
    header = (
        f"{'estimator':<15}{'samples':>8}{'evals':>7}{'1-cos':>11}{'Var cos':>11}"
        f"{'sum bias^2':>12}{'(floor)':>11}{'sum Var':>11}{'wall ms':>9}{'cpu ms':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['estimator']:<15}{row['samples']:>8}{row['evaluations']:>7}"
            f"{row['bias_cos']:>11.3e}{row['variance_cos']:>11.3e}{row['sq_bias_sum']:>12.3e}"
            f"{row['sq_bias_floor']:>11.3e}{row['variance_sum']:>11.3e}"
            f"{row['median_wall_ms']:>9.3f}{row['median_cpu_ms']:>9.3f}"
        )
    return "\n".join(lines)


def table_title(rows: Sequence[dict[str, Any]]) -> str:
    """``"separable f, D = 12, K = 3"`` for one config's rows."""
    row = rows[0]
    return f"{row['objective']} f, D = {row['num_variables']}, K = {row['num_categories']}"


def draw_config(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """The paper's twin-axis bars on ``ax``: bias ``mean(1 - cos)`` (left) and ``Var(cos)`` (right).

    Both axes are logarithmic and start at a tenth of the smallest positive value;
    a zero (possible for IndeCateR) is drawn there. Every bar is labelled with its value.
    """
    from matplotlib.ticker import LogLocator, NullLocator

    positive = [row[key] for row in rows for key in ("bias_cos", "variance_cos") if row[key] > 0]
    floor = 0.1 * min(positive, default=1e-20)
    positions = range(len(rows))
    width = 0.38
    right = ax.twinx()
    for axis, key, shift, colour, name in (
        (ax, "bias_cos", -width / 2, "tab:blue", "bias: mean(1 - cos)"),
        (right, "variance_cos", width / 2, "tab:orange", "variance: Var(cos)"),
    ):
        values = [row[key] for row in rows]
        bars = axis.bar([p + shift for p in positions], [max(v, floor) for v in values], width, color=colour)
        axis.set_yscale("log")
        axis.yaxis.set_major_locator(LogLocator(numticks=8))
        axis.yaxis.set_minor_locator(NullLocator())
        axis.set_ylabel(name, color=colour)
        axis.bar_label(bars, labels=[f"{v:.1e}" for v in values], fontsize=6, rotation=90, padding=2)
        axis.set_ylim(floor, max(max(values), floor) * 1e4)
    ax.set_xticks(list(positions), [f"{r['estimator']}\n{r['samples']} smp" for r in rows], fontsize=7)
    ax.set_title(table_title(rows), fontsize=9)


def plot_configs(tables: Sequence[Sequence[dict[str, Any]]], path: Path) -> Path:
    """One row of :func:`draw_config` panels, one per config, saved as PNG to ``path``."""
    fig, axes = plotting.subplots(1, len(tables), figsize=(5.2 * len(tables), 3.8), squeeze=False)
    for ax, rows in zip(axes[0], tables):
        draw_config(ax, rows)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(options: GradientsConfig) -> int:
    """``catlog gradients``: every config of ``options.configs``; writes the tables, JSON, CSV and PNGs
    (``fig1_<f>_<D>x<K>.png`` per config and, with several, ``fig1_<f>.png`` with all) and prints the tables."""
    with run_folder.open_command_run(options, "gradients") as run:
        tables = []
        for num_variables, num_categories in options.configs:
            tables.append(compare_config(num_variables, num_categories, options))
            plot_configs(tables[-1:], run.path / f"fig1_{options.f}_{num_variables}x{num_categories}.png")
        if len(tables) > 1:
            plot_configs(tables, run.path / f"fig1_{options.f}.png")
        flat = [row for rows in tables for row in rows]
        common.write_json(run.path / "gradients.json", {"settings": config_json(options), "results": flat})
        common.write_csv(run.path / "gradients.csv", flat)
        text = "\n\n".join(f"{table_title(rows)}\n{format_table(rows)}" for rows in tables)
        common.write_text(run.path / "gradients.txt", text + "\n")
    for rows in tables:
        print(f"\n{table_title(rows)}  ({options.runs} estimates each)\n{format_table(rows)}")
    print(f"\nresults in {run.path}/ (gradients.json, gradients.csv, fig1_{options.f}*.png)")
    return 0


COMMAND = Command(
    "gradients",
    help="figure 1: bias and variance against the exact gradient",
    description=__doc__ or "",
    config=GradientsConfig,
    run=main,
)
