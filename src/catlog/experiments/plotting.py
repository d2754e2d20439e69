"""What every experiment figure shares: run folders read one way, a label per run, readable lines."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catlog.experiments.options import OptionError

MARKER_LIMIT = 30
# Line styles that tell apart runs drawn in one colour (e.g. two seeds of one estimator).
LINESTYLES: tuple[str | tuple[int, tuple[int, int]], ...] = ("-", (0, (5, 2)), ":", "-.")


def subplots(rows: int, columns: int, **options: Any) -> Any:
    """``matplotlib.pyplot.subplots(rows, columns, **options)`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, **options)


def line_style(points: int) -> dict[str, Any]:
    """``ax.plot`` keywords for a series of ``points`` points: markers when there are few (one point stays visible)."""
    if points <= MARKER_LIMIT:
        return {"marker": "o", "markersize": 3.5, "linewidth": 1.2}
    return {"linewidth": 1.2}


def run_labels(keys: Sequence[str], folders: Sequence[Path], panels: Sequence[object] | None = None) -> list[str]:
    """One legend label per run: ``keys[i]`` (e.g. ``"mnist, indecater, seed 0"``), with the run's
    folder name added where two runs drawn in the same panel (``panels[i]``; one panel if ``None``)
    share a key, so that no two lines of a legend share a label."""
    panel_of = list(panels) if panels is not None else [None] * len(keys)
    counts = Counter(zip(panel_of, keys))
    return [
        key if counts[(panel, key)] == 1 else f"{key} ({Path(folder).name})"
        for key, folder, panel in zip(keys, folders, panel_of)
    ]


def check_run_folders(runs: Sequence[Path], command: str) -> None:
    """Raise :class:`OptionError` (``runs``) unless every folder holds ``config.json`` and ``log.csv``."""
    for run in runs:
        if not (Path(run) / "config.json").is_file() or not (Path(run) / "log.csv").is_file():
            raise OptionError(
                "runs", f"expected folders of `catlog {command}` with config.json and log.csv, got {str(run)!r}"
            )


def read_run(run: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """``(config.json, log.csv rows)`` of a run folder; an empty cell (not logged at that row) is NaN."""
    config = json.loads((Path(run) / "config.json").read_text())
    with open(Path(run) / "log.csv", newline="") as handle:
        return config, [{key: float(value or "nan") for key, value in row.items()} for row in csv.DictReader(handle)]
