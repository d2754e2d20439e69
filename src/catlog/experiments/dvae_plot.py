"""``catlog dvae-plot``: the paper's figure 3 row from ``catlog dvae`` run folders.

Four panels against training time, iterations or evaluations of ``f`` per image, one curve
per run: running train negative ELBO, validation negative ELBO, estimator variance (across
repeated estimates at fixed parameters) and the spread of the entries within one gradient
(what the authors' code logs as "gradient variance"); the last two on log scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catlog.experiments import common, plotting
from catlog.experiments.dvae_model import DEFAULT_SAMPLES, make_estimator
from catlog.experiments.options import Command, Options, option

X_AXES = {  # --x-axis: (log column, axis label)
    "cpu": ("train_cpu_s", "training CPU time (s)"),
    "wall": ("train_wall_s", "training wall time (s)"),
    "iteration": ("iteration", "iteration"),
    "evaluations": ("iteration", "evaluations of f per image"),
}
LOG_X = ("iteration", "evaluations")
PANELS = (  # (log column, title, log scale)
    ("train_neg_elbo", "train -ELBO (running mean)", False),
    ("val_neg_elbo", "validation -ELBO", False),
    ("variance", "estimator variance (encoder)", True),
    ("gradient_spread", 'spread within one gradient\n(the authors\' "gradient variance")', True),
)


def evaluations_per_image(config: dict[str, Any]) -> int:
    """The evaluations of ``f`` per image and step of a run: its config's ``cost_per_image`` where it
    recorded one, else the cost of its estimator (``samples`` null in older runs:
    :data:`~catlog.experiments.dvae_model.DEFAULT_SAMPLES`)."""
    if "cost_per_image" in config:
        return int(config["cost_per_image"]["evaluations"])
    latents, categories = config["latents"], config["categories"]
    estimator = make_estimator(config["estimator"], latents, categories, config["samples"] or DEFAULT_SAMPLES)
    return estimator.cost(latents, categories).evaluations


def plot_runs(runs: list[Path], output: Path, x_axis: str = "cpu") -> Path:
    """Plot the runs' logs into the PNG ``output``, one line and one legend entry per run.

    ``x_axis``: a key of :data:`X_AXES`; ``evaluations`` is iterations times the run's
    :func:`evaluations_per_image`. Labels: dataset, estimator and seed (``plotting.run_labels``).
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis: expected one of {tuple(X_AXES)}, got {x_axis!r}")
    column, x_label = X_AXES[x_axis]
    fig, axes = plotting.subplots(1, len(PANELS), figsize=(4.4 * len(PANELS), 3.6))
    from matplotlib.ticker import NullFormatter  # after plotting.subplots chose the backend

    loaded = [plotting.read_run(run) for run in runs]
    labels = plotting.run_labels([f"{c['dataset']}, {c['estimator']}, seed {c['seed']}" for c, _ in loaded], runs)
    for (config, rows), label in zip(loaded, labels):
        scale = evaluations_per_image(config) if x_axis == "evaluations" else 1
        colour = None
        for ax, (panel, _, _) in zip(axes, PANELS):
            points = [(scale * row[column], row[panel]) for row in rows if not math.isnan(row.get(panel, math.nan))]
            if points:
                (line,) = ax.plot(*zip(*points), label=label, color=colour, **plotting.line_style(len(points)))
                colour = line.get_color()
    for ax, (_, title, log_scale) in zip(axes, PANELS):
        ax.set(title=title, xlabel=x_label, yscale="log" if log_scale else "linear")
        ax.set_xscale("log" if x_axis in LOG_X else "linear")
        ax.xaxis.set_minor_formatter(NullFormatter())  # a short log range labels its minor ticks on top of each other
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 3), bbox_to_anchor=(0.5, 0.0), fontsize=8)
    fig.suptitle("Discrete VAE", y=1.02)
    fig.tight_layout()
    return common.save_figure(fig, Path(output))


@dataclass(frozen=True, kw_only=True)
class PlotConfig(Options):
    """Settings of ``catlog dvae-plot``."""

    runs: tuple[Path, ...] = option(help="run folders of catlog dvae")
    output: Path = option(Path("dvae.png"), "PNG to write")
    x_axis: str = option(
        "cpu", "training CPU seconds, wall seconds, iterations or evaluations of f per image", choices=tuple(X_AXES)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        plotting.check_run_folders(self.runs, "dvae")


def run_plot(config: PlotConfig) -> int:
    """The ``catlog dvae-plot`` command."""
    print(f"figure written to {plot_runs(list(config.runs), config.output, x_axis=config.x_axis)}")
    return 0


COMMAND = Command(
    "dvae-plot",
    help="figure 3 row: train/validation -ELBO and variance of dvae runs",
    description=__doc__ or "",
    config=PlotConfig,
    run=run_plot,
)
