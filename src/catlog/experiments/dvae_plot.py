"""``catlog dvae-plot``: the paper's figure 3 row from ``catlog dvae`` run folders.

Three panels against training time (or iterations): running train negative ELBO,
validation negative ELBO and estimator variance (log scale), one curve per run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from catlog.experiments import common

X_COLUMNS = {"cpu": "train_cpu_s", "wall": "train_wall_s", "iteration": "iteration"}
X_LABELS = {"cpu": "training CPU time (s)", "wall": "training wall time (s)", "iteration": "iteration"}
PANELS = (
    ("train_neg_elbo", "train -ELBO (running mean)", False),
    ("val_neg_elbo", "validation -ELBO", False),
    ("variance", "gradient variance (encoder)", True),
)


def read_run(run: Path) -> tuple[dict, list[dict[str, str]]]:
    """``(config, log rows)`` of a ``catlog dvae`` run folder."""
    config = json.loads((run / "config.json").read_text())
    with open(run / "log.csv", newline="") as handle:
        return config, list(csv.DictReader(handle))


def plot_runs(runs: list[Path], output: Path, x_axis: str = "cpu") -> Path:
    """Plot the runs' logs into the PNG ``output``.

    ``x_axis`` is ``"cpu"`` or ``"wall"`` (training seconds), or ``"iteration"`` (log scale).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if x_axis not in X_COLUMNS:
        raise ValueError(f"x_axis: expected one of {tuple(X_COLUMNS)}, got {x_axis!r}")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    datasets = set()
    for run in runs:
        config, rows = read_run(Path(run))
        datasets.add(config["dataset"])
        for ax, (column, _, _) in zip(axes, PANELS):
            points = [(float(r[X_COLUMNS[x_axis]]), float(r[column])) for r in rows if r[column] != ""]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=config["estimator"], linewidth=1.2)
    for ax, (_, title, log_scale) in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel(X_LABELS[x_axis])
        if log_scale:
            ax.set_yscale("log")
        if x_axis == "iteration":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Discrete VAE, {', '.join(sorted(datasets))}", y=1.03)
    return common.save_figure(fig, Path(output))
