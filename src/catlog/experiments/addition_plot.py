"""``catlog addition-plot``: figure 4 (test sum accuracy against epochs) and a summary table from
``catlog addition`` runs."""

from __future__ import annotations

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
Run = tuple[Path, dict[str, Any], list[dict[str, float]]]


def load_run(run: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The ``config.json`` and the ``log.csv`` rows of one run folder (:func:`~catlog.experiments.plotting.read_run`).

    Raises:
        ValueError: the log has no row.
    """
    config, rows = plotting.read_run(run)
    if not rows:
        raise ValueError(f"runs: expected at least one logged row in {run / 'log.csv'}, got none")
    return config, rows


def summary_row(run: Path, config: dict[str, Any], rows: list[dict[str, float]]) -> dict[str, Any]:
    """One row of the summary table (its keys are the columns): final accuracies and time per epoch of a run."""
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


@dataclass(frozen=True)
class Series:
    """One legend entry of figure 4 at ``digits`` (``D``): a run, or the runs of one estimator over
    several ``seeds``; ``accuracy`` (test sum accuracy at ``epochs``) is the run's or the median over
    seeds at the epochs all of them logged, ``low``/``high`` the range over seeds (``None`` for a run)."""

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
    seeds become one series; a single run, or runs that repeat a seed, stay one series each (labels by
    :func:`~catlog.experiments.plotting.run_labels`)."""
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
            for index, seed in zip(members, seeds):
                rows = runs[index][2]
                epochs, accuracy = [row["epoch"] for row in rows], [row["test_sum_accuracy"] for row in rows]
                series.append(Series(digits, estimator, labels[index], epochs, accuracy, None, None, (seed,)))
            continue
        by_epoch = [{row["epoch"]: row["test_sum_accuracy"] for row in runs[index][2]} for index in members]
        epochs = sorted(set.intersection(*(set(accuracy) for accuracy in by_epoch)))
        values = [[accuracy[epoch] for accuracy in by_epoch] for epoch in epochs]
        label = f"{estimator}, seeds {', '.join(map(str, sorted(seeds)))}: median, range"
        median, low, high = ([summary(at) for at in values] for summary in (statistics.median, min, max))
        series.append(Series(digits, estimator, label, epochs, median, low, high, tuple(sorted(seeds))))
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
    """Figure 4: one panel per D (those of :data:`PANEL_DIGITS` and any other present), one line per
    :func:`series_of` series (the min-max range over seeds shaded), against epochs (log scale).

    Dashed grey: ``0.99^D``, the sum accuracy of a hypothetical 99%-accurate digit classifier.
    Series of one estimator share its colour and differ by line style.
    """
    from matplotlib.ticker import NullFormatter

    panels = sorted({config["digits"] for _, config, _ in runs} | set(PANEL_DIGITS))
    fig, axes = plotting.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 3.4), sharex=True, sharey=True, squeeze=False
    )
    series = series_of(runs)
    for ax, digits in zip(axes[0], panels):
        drawn: list[str] = []
        for line in (line for line in series if line.digits == digits):
            colour = COLOURS.get(line.estimator)
            style = plotting.LINESTYLES[drawn.count(line.estimator) % len(plotting.LINESTYLES)]
            style_options = plotting.line_style(len(line.epochs))
            ax.plot(line.epochs, line.accuracy, color=colour, linestyle=style, label=line.label, **style_options)
            if line.low is not None and line.high is not None:
                ax.fill_between(line.epochs, line.low, line.high, color=colour, alpha=0.2, linewidth=0)
            drawn.append(line.estimator)
        ax.axhline(0.99**digits, color="grey", linestyle="--", linewidth=1, label=f"0.99^{digits} (99% digits)")
        ax.set(xscale="log", ylim=(0, 1), title=f"D = {digits}", xlabel="epochs")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="center left")  # early epochs: every curve is still near zero there
    axes[0][0].set_ylabel("test sum accuracy")
    fig.tight_layout()
    return fig


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` (dicts with the same keys, at least one) as a Markdown table, one column per key."""
    return common.markdown_table(tuple(rows[0]), [list(row.values()) for row in rows])


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
    common.write_csv(config.out.with_suffix(".csv"), table)
    text = markdown(table)
    over_seeds = seed_table(series_of(runs))
    if over_seeds:
        text += "\nOver seeds (final test sum accuracy):\n\n" + markdown(over_seeds)
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
