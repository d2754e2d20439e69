"""Time and peak memory of one SCateR estimate as the sequence length D and the categories K grow.

Usage::

    python benchmarks/scater_cost.py --threads 1 [--device cpu] [--size D K ...] [--out DIR]

The model is a causal policy over ``D`` tokens of ``K`` categories for a batch of
16 contexts: ``logits(x_d | x_<d) = W tanh(E_ctx + sum_{i<d} E[i, x_i] + P_d)``, hidden
64, all weights shared by the positions; ``f`` scores neighbouring pairs of tokens.
For each (D, K) it reports, for SCateR with one base sample and for REINFORCE with
as many samples as SCateR evaluates rows of ``f``:

- the wall time of one gradient estimate (estimate + ``backward()``; median over
  repeats after a warm-up, and the median process CPU time), timed as in
  ``benchmarks/bench.py``;
- the calls of ``conditional`` and the rows they process: SCateR rolls out
  ``N * sum_d (K - 1) * (D - 1 - d) = N (K - 1) D (D - 1) / 2`` completion
  row-steps (each completion is as long as its suffix), so its time grows like
  ``K D^2`` when the conditional dominates, against ``D`` calls of ``N (1 + D (K - 1))``
  rows for REINFORCE;
- the peak memory of one estimate (as in ``bench.py``: growth of a fresh
  subprocess's peak RSS on CPU, ``max_memory_allocated`` on CUDA), also with
  ``chunk_size=64``, which bounds the completion rows held at once.

It prints a Markdown table and writes ``scater_cost.json`` and ``scater_cost.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch

import catlog
from bench import gradient_step, peak_memory_here, run_memory_probe, timings
from catlog.experiments import common
from catlog.experiments.options import add_common_options, apply_common_options
from catlog.experiments.problems import Problem

SIZES: tuple[tuple[int, int], ...] = ((4, 4), (8, 4), (16, 4), (32, 4), (64, 4), (16, 2), (16, 6), (16, 10))
CHUNK_ROWS = 64
BATCH, HIDDEN = 16, 64


def make_problem(
    num_variables: int, num_categories: int, device: torch.device, dtype: torch.dtype
) -> tuple[Problem, list[int]]:
    """The causal policy and reward for (D, K); the list collects the rows of every ``conditional`` call."""
    generator = torch.Generator().manual_seed(0)

    def parameter(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator, dtype=dtype) / shape[-1] ** 0.5).to(device).requires_grad_()

    context, embed = parameter(BATCH, HIDDEN), parameter(num_variables, num_categories, HIDDEN)
    position, readout = parameter(num_variables, HIDDEN), parameter(HIDDEN, num_categories)
    positions = torch.arange(num_variables, device=device)
    calls: list[int] = []

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        calls.append(x.shape[0])
        summed = embed[positions[:d], x[..., :d]].sum(-2)
        return torch.tanh(context + summed + position[d]) @ readout

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x[..., 1:] == (x[..., :-1] + 1) % num_categories).to(dtype).mean(-1)

    dist = catlog.Autoregressive(conditional, num_variables, num_categories, (BATCH,), device=device, dtype=dtype)
    problem = Problem(
        "scater-cost",
        "causal policy",
        num_variables,
        num_categories,
        lambda estimator, generator: estimator(f, dist, generator=generator).sum(),
        (context, embed, position, readout),
        f,
        (BATCH,),
        autoregressive=True,
    )
    return problem, calls


def estimators(num_variables: int, num_categories: int) -> dict[str, catlog.Estimator]:
    """SCateR 1, SCateR 1 in chunks, and REINFORCE at SCateR's number of evaluations."""
    evaluations = catlog.SCateR(1).cost(num_variables, num_categories).evaluations
    return {
        "SCateR 1": catlog.SCateR(1),
        f"SCateR 1, chunks of {CHUNK_ROWS}": catlog.SCateR(1, chunk_size=CHUNK_ROWS),
        f"REINFORCE {evaluations}": catlog.REINFORCE(evaluations),
    }


def peak_memory(num_variables: int, num_categories: int, label: str, options: argparse.Namespace) -> float | None:
    """Peak memory (MiB) of one estimate, in a fresh subprocess on CPU."""
    device, dtype = apply_common_options(options)
    if device.type == "cuda":
        problem, _ = make_problem(num_variables, num_categories, device, dtype)
        return peak_memory_here(problem, estimators(num_variables, num_categories)[label], device)
    return run_memory_probe(__file__, [str(num_variables), str(num_categories), label], options)


def run_size(num_variables: int, num_categories: int, options: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per estimator at (D, K)."""
    device, dtype = apply_common_options(options)
    rows = []
    for label, estimator in estimators(num_variables, num_categories).items():
        problem, calls = make_problem(num_variables, num_categories, device, dtype)
        gradient_step(problem, estimator)
        call_count, row_steps = len(calls), sum(calls)
        step = timings(
            lambda: gradient_step(problem, estimator),  # noqa: B023 (called at once)
            device,
            options.min_time,
            options.min_repeats,
            options.max_repeats,
        )
        rows.append(
            {
                "D": num_variables,
                "K": num_categories,
                "estimator": label,
                "evaluations": estimator.cost(num_variables, num_categories).evaluations,
                "conditional_calls": call_count,
                "conditional_rows": row_steps,
                **step,
                "peak_mib": None if options.no_memory else peak_memory(num_variables, num_categories, label, options),
            }
        )
    return rows


COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], object]], ...] = (
    ("D", lambda r: r["D"]),
    ("K", lambda r: r["K"]),
    ("estimator", lambda r: r["estimator"]),
    ("f rows/elem", lambda r: r["evaluations"]),
    ("conditional calls", lambda r: r["conditional_calls"]),
    ("conditional rows", lambda r: r["conditional_rows"]),
    ("ms (IQR)", lambda r: f"{r['median_ms']:.3g} ({r['q1_ms']:.3g}-{r['q3_ms']:.3g})"),
    ("CPU ms", lambda r: f"{r['cpu_median_ms']:.3g}"),
    ("peak MiB", lambda r: "-" if r["peak_mib"] is None else f"{r['peak_mib']:.3g}"),
)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (times in ms, per estimate of a batch of 16)."""
    return common.markdown_table([title for title, _ in COLUMNS], [[cell(row) for _, cell in COLUMNS] for row in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """Run every size, print the table, write ``scater_cost.json`` and ``scater_cost.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of repeats per measurement (default 0.5)")
    parser.add_argument("--min-repeats", type=int, default=3, help="fewest timed repeats (default 3)")
    parser.add_argument("--max-repeats", type=int, default=100, help="most timed repeats (default 100)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--size", nargs=2, type=int, action="append", metavar=("D", "K"), help="a size to run; repeat (default: SIZES)"
    )
    parser.add_argument("--memory-probe", nargs=3, default=None, help=argparse.SUPPRESS)
    add_common_options(parser)
    options = parser.parse_args(argv)
    device, dtype = apply_common_options(options)
    if options.memory_probe is not None:
        num_variables, num_categories, label = (
            int(options.memory_probe[0]),
            int(options.memory_probe[1]),
            options.memory_probe[2],
        )
        problem, _ = make_problem(num_variables, num_categories, device, dtype)
        print(peak_memory_here(problem, estimators(num_variables, num_categories)[label], device))
        return 0
    sizes = SIZES if options.size is None else options.size
    rows = [row for size in common.progress(sizes, desc="sizes") for row in run_size(*size, options)]
    table = format_table(rows)
    print(table)
    out = common.default_out(options.out, "scater-cost")
    common.write_json(
        out / "scater_cost.json",
        {
            "device": str(device),
            "dtype": options.dtype,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "rows": rows,
        },
    )
    common.write_text(out / "scater_cost.md", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
