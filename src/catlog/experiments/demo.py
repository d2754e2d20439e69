"""``catlog demo``: a quick tour of both synthetic experiments (about half a minute on 2 CPU cores).

1. ``catlog gradients`` on one config (``D = 12, K = 3``) with fewer repeated
   estimates: bias and variance of IndeCateR (1 sample) against REINFORCE, RLOO
   and Gumbel-Softmax (1000 samples), for the paper's separable ``f`` and for
   the nonseparable one.
2. ``catlog optimise`` with fewer iterations and seeds: ``E[f]``, time and
   variance of the four methods of figure 2.

Prints the tables and where the files went: ``<out>/gradients-<f>/`` and
``<out>/optimise/``. The full protocols are ``catlog gradients`` and ``catlog optimise``.
Unlike the other commands, ``demo`` runs torch on one thread unless ``--threads`` says
otherwise: these tensors are small, and extra threads only contend for the cores.
"""

from __future__ import annotations

import argparse
from typing import Any

from catlog.experiments import common, synthetic_gradients, synthetic_optimise


def demo_options(options: argparse.Namespace, parser: argparse.ArgumentParser, **settings: Any) -> argparse.Namespace:
    """``parser``'s defaults, overridden by ``settings`` and the common options of ``options``."""
    merged = parser.parse_args([])
    for key in ("device", "seed", "dtype", "threads"):
        setattr(merged, key, getattr(options, key))
    for key, value in settings.items():
        setattr(merged, key, value)
    return merged


def subcommand_parser(add_options: Any) -> argparse.ArgumentParser:
    """A stand-alone parser with an experiment's options and the common ones."""
    parser = argparse.ArgumentParser(add_help=False)
    add_options(parser)
    common.add_common_options(parser)
    return parser


def main(options: argparse.Namespace) -> int:
    """Run the short versions of ``gradients`` (both objectives) and ``optimise``; print their tables."""
    out = common.output_dir(options.out, "demo")
    gradients_parser = subcommand_parser(synthetic_gradients.add_options)
    for objective in synthetic_gradients.OBJECTIVES:
        settings = demo_options(
            options,
            gradients_parser,
            configs=[(12, 3)],
            f=objective,
            runs=options.runs,
            out=out / f"gradients-{objective}",
        )
        synthetic_gradients.check_options(settings)
        folder, tables = synthetic_gradients.run_gradients(settings)
        for rows in tables:
            print(f"\n{synthetic_gradients.table_title(rows)}  ({options.runs} estimates each)")
            print(synthetic_gradients.format_table(rows))
        print(f"plot: {folder}/fig1_{objective}_12x3.png")
    settings = demo_options(
        options,
        subcommand_parser(synthetic_optimise.add_options),
        iterations=options.iterations,
        seeds=options.seeds,
        out=out / "optimise",
    )
    synthetic_optimise.check_options(settings)
    folder, table, methods = synthetic_optimise.run_optimise(settings)
    print(f"\noptimise, D = 200, {options.iterations} iterations, {options.seeds} seeds")
    print(synthetic_optimise.format_table(table, methods))
    print(f"plot: {folder}/fig2_optimise.png")
    print(f"\nall results in {out}/")
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog demo`` (without the common ones)."""
    parser.add_argument(
        "--runs", type=int, default=100, help="repeated estimates per estimator in gradients (default: 100)"
    )
    parser.add_argument("--iterations", type=int, default=50, help="iterations of optimise (default: 50)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of optimise (default: 2)")


def register(subparsers: Any) -> None:
    """Add ``catlog demo``."""
    parser = common.add_subcommand(
        subparsers,
        "demo",
        help="quick version of gradients and optimise (about half a minute on 2 CPU cores)",
        description=__doc__,
        add_options=add_options,
        func=main,
    )
    parser.set_defaults(threads=1)
