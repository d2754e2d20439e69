"""Figure 4 (test sum accuracy against epochs) and a summary table from ``catlog addition`` runs."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catlog.experiments import common, plotting
from catlog.experiments.options import Command, Options, option

PANEL_DIGITS: tuple[int, ...] = (4, 8, 12, 16)
COLOURS = {
    "indecater": "tab:blue",
    "indecater-pv": "tab:orange",
    "rloo-s": "tab:green",
    "rloo-f": "tab:red",
    "reinforce-s": "tab:purple",
}
SUMMARY_FIELDS = (
    "digits",
    "estimator",
    "seed",
    "epochs",
    "train_images",
    "test_sum_accuracy",
    "test_digit_accuracy",
    "reference_0.99^D",
    "wall_s_per_epoch",
    "cpu_s_per_epoch",
    "run",
)


def load_run(run: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The ``config.json`` and the ``log.csv`` rows (as floats) of one run folder."""
    config_path, log_path = run / "config.json", run / "log.csv"
    config = json.loads(config_path.read_text())
    with log_path.open(newline="") as handle:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    if not rows:
        raise ValueError(f"runs: expected at least one logged row in {log_path}, got none")
    return config, rows


def summary_row(run: Path, config: dict[str, Any], rows: list[dict[str, float]]) -> dict[str, Any]:
    """One table row: final accuracies and training time per epoch of a run."""
    last = rows[-1]
    return {
        "digits": config["digits"],
        "estimator": config["estimator"],
        "seed": config["seed"],
        "epochs": last["epoch"],
        "train_images": config["train_limit"] or "all",
        "test_sum_accuracy": round(last["test_sum_accuracy"], 4),
        "test_digit_accuracy": round(last["test_digit_accuracy"], 4),
        "reference_0.99^D": round(0.99 ** config["digits"], 4),
        "wall_s_per_epoch": round(last["train_wall_s"] / last["epoch"], 1),
        "cpu_s_per_epoch": round(last["train_cpu_s"] / last["epoch"], 1),
        "run": run.name,
    }


Run = tuple[Path, dict[str, Any], list[dict[str, float]]]


@dataclass(frozen=True)
class Series:
    """One legend entry of figure 4: a run, or the runs of one estimator at one ``D`` over several seeds.

    Attributes:
        digits: ``D``.
        estimator: the estimator's name.
        label: the legend label.
        epochs: the logged epochs (for seeds, those every seed logged).
        accuracy: test sum accuracy at ``epochs``: the run's, or the median over seeds.
        low, high: the smallest and largest accuracy over seeds at ``epochs``; ``None`` for a run.
        seeds: the seeds drawn.
    """

    digits: int
    estimator: str
    label: str
    epochs: list[float]
    accuracy: list[float]
    low: list[float] | None
    high: list[float] | None
    seeds: tuple[int, ...]


def series_of(runs: Sequence[Run]) -> list[Series]:
    """The series to draw, in the order of ``runs``: the runs of one ``(D, estimator)`` with distinct
    seeds become one series (median and min-max over seeds at the epochs all of them logged); a
    single run, or runs that repeat a seed, stay one series each (labels by
    :func:`catlog.experiments.plotting.run_labels`)."""
    labels = plotting.run_labels(
        [f"{config['estimator']}, seed {config['seed']}" for _, config, _ in runs],
        [run for run, _, _ in runs],
        [config["digits"] for _, config, _ in runs],
    )
    groups: dict[tuple[int, str], list[int]] = {}
    for index, (_, config, _) in enumerate(runs):
        groups.setdefault((config["digits"], config["estimator"]), []).append(index)
    series = []
    for (digits, estimator), members in groups.items():
        seeds = tuple(runs[index][1]["seed"] for index in members)
        if len(members) == 1 or len(set(seeds)) < len(seeds):
            for index in members:
                _, config, rows = runs[index]
                accuracy = [row["test_sum_accuracy"] for row in rows]
                epochs = [row["epoch"] for row in rows]
                series.append(Series(digits, estimator, labels[index], epochs, accuracy, None, None, (config["seed"],)))
            continue
        by_epoch = [{row["epoch"]: row["test_sum_accuracy"] for row in runs[index][2]} for index in members]
        epochs = sorted(set.intersection(*(set(accuracy) for accuracy in by_epoch)))
        values = [[accuracy[epoch] for accuracy in by_epoch] for epoch in epochs]
        label = f"{estimator}, seeds {', '.join(map(str, sorted(seeds)))}: median, range"
        series.append(
            Series(
                digits,
                estimator,
                label,
                epochs,
                [statistics.median(at) for at in values],
                [min(at) for at in values],
                [max(at) for at in values],
                tuple(sorted(seeds)),
            )
        )
    return series


def seed_table(series: Sequence[Series]) -> list[dict[str, Any]]:
    """One row per series over several seeds: the final test sum accuracy's median, min and max."""
    return [
        {
            "digits": line.digits,
            "estimator": line.estimator,
            "seeds": " ".join(map(str, line.seeds)),
            "epochs": line.epochs[-1],
            "test_sum_accuracy_median": round(line.accuracy[-1], 4),
            "test_sum_accuracy_min": round(line.low[-1], 4),
            "test_sum_accuracy_max": round(line.high[-1], 4),
        }
        for line in series
        if line.low is not None and line.high is not None and line.epochs
    ]


def plot_runs(runs: Sequence[Run]) -> Any:
    """Figure 4: one panel per D (those of :data:`PANEL_DIGITS` and any other present), one line per series.

    x: epochs (log scale); y: test sum accuracy; dashed grey: ``0.99^D``, the sum
    accuracy of a hypothetical 99%-accurate digit classifier. A series (:func:`series_of`)
    is a run (legend: estimator and seed, plus the folder name where those repeat) or
    several seeds of one estimator (their median, with the min-max range shaded);
    series of one estimator share its colour, and short ones show their points.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = sorted({config["digits"] for _, config, _ in runs} | set(PANEL_DIGITS))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), sharex=True, sharey=True, squeeze=False)
    series = series_of(runs)
    for ax, digits in zip(axes[0], panels):
        drawn: list[str] = []
        for line in series:
            if line.digits != digits:
                continue
            colour = COLOURS.get(line.estimator)
            ax.plot(
                line.epochs,
                line.accuracy,
                color=colour,
                linestyle=plotting.LINESTYLES[drawn.count(line.estimator) % len(plotting.LINESTYLES)],
                label=line.label,
                **plotting.line_style(len(line.epochs)),
            )
            if line.low is not None and line.high is not None:
                ax.fill_between(line.epochs, line.low, line.high, color=colour, alpha=0.2, linewidth=0)
            drawn.append(line.estimator)
        ax.axhline(0.99**digits, color="grey", linestyle="--", linewidth=1, label=f"0.99^{digits} (99% digits)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1)
        ax.set_title(f"D = {digits}")
        ax.set_xlabel("epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="center left")  # early epochs: every curve is still near zero there
    axes[0][0].set_ylabel("test sum accuracy")
    fig.tight_layout()
    return fig


def markdown_table(rows: list[dict[str, Any]], fields: Sequence[str] = SUMMARY_FIELDS) -> str:
    """``rows`` as a GitHub markdown table with the columns ``fields``."""
    return common.markdown_table(fields, [[row[field] for field in fields] for row in rows])


@dataclass(frozen=True, kw_only=True)
class PlotConfig(Options):
    """Settings of ``catlog addition-plot``."""

    runs: tuple[Path, ...] = option(help="run folders written by `catlog addition`")
    out: Path = option(Path("addition.png"), "PNG to write; a summary CSV and markdown go beside it")

    def __post_init__(self) -> None:
        super().__post_init__()
        plotting.check_run_folders(self.runs, "addition")


def main(config: PlotConfig) -> int:
    """Write figure 4 to ``config.out`` and the summary to ``<out>.csv`` and ``<out>.md`` (with a second
    table over seeds where an estimator ran several at one ``D``); print the tables."""
    runs: list[Run] = [(run, *load_run(run)) for run in config.runs]
    runs.sort(key=lambda item: (item[1]["digits"], item[1]["estimator"], item[1]["seed"]))
    table = [summary_row(run, run_config, rows) for run, run_config, rows in runs]
    common.save_figure(plot_runs(runs), config.out)
    common.write_csv(config.out.with_suffix(".csv"), table, SUMMARY_FIELDS)
    text = markdown_table(table)
    over_seeds = seed_table(series_of(runs))
    if over_seeds:
        text += "\nOver seeds (final test sum accuracy):\n\n" + markdown_table(over_seeds, tuple(over_seeds[0]))
    common.write_text(config.out.with_suffix(".md"), text)
    print(text, end="")
    return 0


COMMAND = Command(
    "addition-plot",
    help="figure 4 and a summary table from addition runs",
    description=(
        "Test sum accuracy against epochs, one panel per D, one line per run; several seeds of one "
        "estimator at one D are drawn as their median with the min-max range shaded."
    ),
    config=PlotConfig,
    run=main,
)
