"""How IndeCateR's step time and peak memory grow with D, K, N and the batch size, beside the floor.

Usage::

    python benchmarks/cost_growth.py --threads 1 [--device cpu] [--out DIR] [--figure PNG]

The objective is a small network on the one-hot code of the latents,
``f(x) = relu(onehot(x) W_1 + b_1) . w_2`` (``W_1: [D K, 64]``), so one row of ``f``
costs ``O(D K)``; the logits ``[B, D, K]`` are the parameters. From the base point
``D = 16, K = 4, N = 2, B = 16`` one axis at a time sweeps a range (see ``AXES``).
At each point it reports:

- the step: wall time of ``IndeCateR(N)(f, logits).sum().backward()`` (median over
  repeats after a warm-up, as in ``benchmarks/bench.py``) and the peak memory it adds
  (a fresh subprocess, as in ``bench.py``);
- the floor: the same for one call of ``f`` under ``torch.no_grad()`` on as many rows
  as the step evaluates, ``N (1 + D (K - 1)) B`` (``est.cost``), inputs built beforehand.

The step should grow like the floor (their ratio flat along every axis). It prints a
Markdown table, writes ``cost_growth.json`` and ``cost_growth.md`` into ``--out`` and a
log-log figure (time on top, memory below, one column per axis) to ``--figure``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import catlog
from bench import floor_rows, peak_memory_here, peak_memory_of, run_memory_probe, step_and_floor
from catlog.experiments import common
from catlog.experiments.options import add_common_options, apply_common_options
from catlog.experiments.problems import Problem, logits_problem

BASE = {"D": 16, "K": 4, "N": 2, "B": 16}
AXES: dict[str, tuple[int, ...]] = {
    "D": (2, 4, 8, 16, 32, 64, 128),
    "K": (2, 4, 8, 16, 32),
    "N": (1, 2, 4, 8, 16, 32),
    "B": (1, 4, 16, 64, 256),
}
HIDDEN = 64
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "cost_growth.png"


def make_problem(point: dict[str, int], device: torch.device, dtype: torch.dtype) -> Problem:
    """Logits ``[B, D, K] ~ N(0, 1)`` (the parameters) and the one-hot network ``f`` (see module doc)."""
    generator = torch.Generator().manual_seed(0)
    num_variables, num_categories, batch = point["D"], point["K"], point["B"]
    width = num_variables * num_categories
    hidden_weight = (torch.randn(width, HIDDEN, generator=generator, dtype=dtype) / width**0.5).to(device)
    hidden_bias = torch.randn(HIDDEN, generator=generator, dtype=dtype).to(device)
    out_weight = (torch.randn(HIDDEN, generator=generator, dtype=dtype) / HIDDEN**0.5).to(device)
    logits = torch.randn(batch, num_variables, num_categories, generator=generator, dtype=dtype).to(device)
    logits.requires_grad_()

    def f(x: torch.Tensor) -> torch.Tensor:
        code = F.one_hot(x, num_categories).flatten(-2).to(dtype)
        return (code @ hidden_weight + hidden_bias).relu() @ out_weight

    return logits_problem("cost-growth", "one-hot network f", logits, f, relaxable=False)


def measure_point(
    axis: str, value: int, options: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """Step and floor time and memory at ``BASE`` with ``axis = value``; one row of the results."""
    point = {**BASE, axis: value}
    problem, estimator = make_problem(point, device, dtype), catlog.IndeCateR(point["N"])
    rows, step, base = step_and_floor(problem, estimator, options, device, dtype)
    memory = {
        kind: None if options.no_memory else peak_memory(axis, value, kind, options) for kind in ("step", "floor")
    }
    return {
        "axis": axis,
        **point,
        "rows": rows.shape[0] * point["B"],
        "step_ms": step["median_ms"],
        "floor_ms": base["median_ms"],
        "step_over_floor": step["median_ms"] / base["median_ms"],
        "step_peak_mib": memory["step"],
        "floor_peak_mib": memory["floor"],
    }


def peak_memory(axis: str, value: int, kind: str, options: argparse.Namespace) -> float | None:
    """Peak memory (MiB) of the first ``kind`` (step or floor) at the point: in a fresh subprocess on CPU."""
    if torch.device(options.device).type == "cuda":
        return probe(axis, value, kind, options)
    return run_memory_probe(__file__, [axis, str(value), kind], options)


def probe(axis: str, value: int, kind: str, options: argparse.Namespace) -> float:
    """Peak memory (MiB) of the first ``kind`` at the point, in this process."""
    device, dtype = apply_common_options(options)
    point = {**BASE, axis: value}
    problem, estimator = make_problem(point, device, dtype), catlog.IndeCateR(point["N"])
    if kind == "step":
        return peak_memory_here(problem, estimator, device)
    rows = floor_rows(problem, estimator, device, dtype)
    return peak_memory_of(lambda: torch.no_grad()(problem.f)(rows), device)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Log-log figure: time (top) and peak memory (bottom) of step and floor against each axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, len(AXES), figsize=(3.2 * len(AXES), 6), squeeze=False)
    for column, axis in enumerate(AXES):
        own = [r for r in rows if r["axis"] == axis]
        values = [r[axis] for r in own]
        for row, (unit, key) in enumerate((("ms", "ms"), ("MiB", "peak_mib"))):
            panel = grid[row][column]
            for kind, style in (("step", "o-"), ("floor", "s--")):
                series = [(v, r[f"{kind}_{key}"]) for v, r in zip(values, own) if r[f"{kind}_{key}"]]
                if series:
                    panel.plot(
                        *zip(*series), style, label="IndeCateR step" if kind == "step" else "floor: f on the same rows"
                    )
            panel.set_xscale("log", base=2)
            panel.set_yscale("log")
            panel.set_xlabel(
                f"{axis} (others: {', '.join(f'{k}={v}' for k, v in BASE.items() if k != axis)})", fontsize=8
            )
            panel.set_ylabel(f"{'time' if row == 0 else 'peak memory'} ({unit})")
            panel.grid(True, which="both", alpha=0.3)
    next(panel for panel in grid[0] if panel.lines).legend(fontsize=8)
    figure.suptitle("IndeCateR step against the evaluation floor (one thread, log-log)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""

    def mib(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    columns = ["axis", "D", "K", "N", "B", "rows of f", "step ms", "floor ms", "step/floor", "step MiB", "floor MiB"]
    cells = [
        [
            *(r[key] for key in ("axis", "D", "K", "N", "B", "rows")),
            f"{r['step_ms']:.3g}",
            f"{r['floor_ms']:.3g}",
            f"{r['step_over_floor']:.2f}",
            mib(r["step_peak_mib"]),
            mib(r["floor_peak_mib"]),
        ]
        for r in rows
    ]
    return common.markdown_table(columns, cells)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--axis", action="append", choices=list(AXES), help="axis to sweep; repeat for several (default all)"
    )
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per measurement (default 0.3)")
    parser.add_argument("--min-repeats", type=int, default=3, help="fewest timed repeats (default 3)")
    parser.add_argument("--max-repeats", type=int, default=200, help="most timed repeats (default 200)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--figure", type=Path, default=FIGURE, help="PNG to write (default docs/figures/cost_growth.png)"
    )
    parser.add_argument("--memory-probe", nargs=3, default=None, help=argparse.SUPPRESS)
    add_common_options(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Sweep the axes, print the table, write the results and the figure."""
    options = parse_args(argv)
    if options.memory_probe is not None:
        axis, value, kind = options.memory_probe
        print(probe(axis, int(value), kind, options))
        return 0
    device, dtype = apply_common_options(options)
    points = [(axis, value) for axis in options.axis or AXES for value in AXES[axis]]
    rows = [
        measure_point(axis, value, options, device, dtype) for axis, value in common.progress(points, desc="points")
    ]
    table = format_table(rows)
    print(table)
    out = common.default_out(options.out, "cost-growth")
    common.write_json(out / "cost_growth.json", {"base": BASE, "threads": torch.get_num_threads(), "rows": rows})
    common.write_text(out / "cost_growth.md", table)
    print(f"wrote {out / 'cost_growth.json'} and {plot(rows, options.figure)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
