"""``catlog dvae-plot``: the paper's figure 3 row from ``catlog dvae`` run folders.

Four panels against training time, iterations or evaluations of ``f`` per image: running train negative ELBO,
validation negative ELBO, estimator variance (across repeated estimates at fixed
parameters) and the spread of the entries within one gradient (what the authors' code
logs as "gradient variance", for holding our curves against the paper's); the last two
on log scales; one curve per run.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catlog.experiments import common, estimators, plotting
from catlog.experiments.options import Command, Options, option

X_COLUMNS = {"cpu": "train_cpu_s", "wall": "train_wall_s", "iteration": "iteration", "evaluations": "iteration"}
X_LABELS = {
    "cpu": "training CPU time (s)",
    "wall": "training wall time (s)",
    "iteration": "iteration",
    "evaluations": "evaluations of f per image",
}
LOG_X = ("iteration", "evaluations")
PANELS = (
    ("train_neg_elbo", "train -ELBO (running mean)", False),
    ("val_neg_elbo", "validation -ELBO", False),
    ("variance", "estimator variance (encoder)", True),
    ("gradient_spread", 'spread within one gradient\n(the authors\' "gradient variance")', True),
)


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``(config, log rows)`` of a ``catlog dvae`` run folder."""
    config = json.loads((run / "config.json").read_text())
    with open(run / "log.csv", newline="") as handle:
        return config, list(csv.DictReader(handle))


def evaluations_per_image(config: dict[str, Any]) -> int:
    """The evaluations of ``f`` per image and step of a run: its config's ``cost_per_image`` where it
    recorded one, else the cost of its estimator (``samples`` null in older runs: the default, 2)."""
    if "cost_per_image" in config:
        return int(config["cost_per_image"]["evaluations"])
    budget = estimators.Budget(config["samples"] or 2, config["latents"], config["categories"])
    return estimators.make(config["estimator"], budget).cost(config["latents"], config["categories"]).evaluations


def plot_runs(runs: list[Path], output: Path, x_axis: str = "cpu") -> Path:
    """Plot the runs' logs into the PNG ``output``, one line and one legend entry per run.

    ``x_axis`` is ``"cpu"`` or ``"wall"`` (training seconds), ``"iteration"`` or ``"evaluations"``
    (iterations times the run's :func:`evaluations_per_image`);
    the last two on a log scale.
    A run's label is its dataset, estimator and seed (plus its folder name where those
    repeat); series with few points show markers, so a one-row log is still visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x_axis not in X_COLUMNS:
        raise ValueError(f"x_axis: expected one of {tuple(X_COLUMNS)}, got {x_axis!r}")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.4 * len(PANELS), 3.6))
    loaded = [read_run(Path(run)) for run in runs]
    labels = plotting.run_labels(
        [f"{c['dataset']}, {c['estimator']}, seed {c['seed']}" for c, _ in loaded], [Path(run) for run in runs]
    )
    for (config, rows), label in zip(loaded, labels):
        scale = evaluations_per_image(config) if x_axis == "evaluations" else 1
        colour = None
        for ax, (column, _, _) in zip(axes, PANELS):
            points = [(scale * float(r[X_COLUMNS[x_axis]]), float(r[column])) for r in rows if r.get(column, "") != ""]
            if points:
                xs, ys = zip(*points)
                (line,) = ax.plot(xs, ys, label=label, color=colour, **plotting.line_style(len(points)))
                colour = line.get_color()
    for ax, (_, title, log_scale) in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel(X_LABELS[x_axis])
        if log_scale:
            ax.set_yscale("log")
        if x_axis in LOG_X:
            ax.set_xscale("log")
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
        "cpu", "training CPU seconds, wall seconds, iterations or evaluations of f per image", choices=tuple(X_COLUMNS)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        plotting.check_run_folders(self.runs, "dvae")


def run_plot(config: PlotConfig) -> int:
    """The ``catlog dvae-plot`` command."""
    path = plot_runs(list(config.runs), config.output, x_axis=config.x_axis)
    print(f"figure written to {path}")
    return 0


COMMAND = Command(
    "dvae-plot",
    help="figure 3 row: train/validation -ELBO and variance of dvae runs",
    description=__doc__ or "",
    config=PlotConfig,
    run=run_plot,
)
