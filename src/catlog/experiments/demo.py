"""``catlog demo``: a quick tour of both synthetic experiments (about half a minute on 2 CPU cores).

1. ``catlog gradients`` on one config (``D = 12, K = 3``) with fewer repeated
   estimates: bias and variance of IndeCateR (1 sample) against REINFORCE, RLOO
   and Gumbel-Softmax (1000 samples), for the paper's separable ``f`` and for
   the nonseparable one.
2. ``catlog optimise`` with fewer iterations and seeds: ``E[f]`` at the start and at
   the end, the share of the gap to the optimum each of figure 2's four methods closed,
   and their time.

Prints the tables and where the files went: ``<out>/gradients-<f>/`` and
``<out>/optimise/``. The full protocols are ``catlog gradients`` and ``catlog optimise``.
Unlike the other commands, ``demo`` runs torch on one thread unless ``--threads`` says
otherwise: these tensors are small, and extra threads only contend for the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from catlog.experiments import common, run_folder, synthetic_gradients, synthetic_optimise
from catlog.experiments.problems import figure1


@dataclass(frozen=True, kw_only=True)
class DemoConfig(common.RunOptions):
    """Settings of ``catlog demo``: repeated estimates of gradients, iterations and seeds of optimise."""

    runs: int = 100
    iterations: int = 50
    seeds: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_at_least("--runs", self.runs, 2)
        common.check_at_least("--iterations", self.iterations, 1)
        common.check_at_least("--seeds", self.seeds, 1)


def main(options: DemoConfig) -> int:
    """Run the short versions of ``gradients`` (both objectives) and ``optimise``; print their tables."""
    shared = {key: getattr(options, key) for key in ("device", "seed", "dtype", "threads", "overwrite")}
    with run_folder.open_run(
        common.default_out(options.out, "demo"), common.config_json(options), overwrite=options.overwrite
    ) as run:
        out = run.path
        for objective in figure1.OBJECTIVES:
            settings = synthetic_gradients.GradientsConfig(
                **shared, configs=((12, 3),), f=objective, runs=options.runs, out=out / f"gradients-{objective}"
            )
            folder, tables = synthetic_gradients.run_gradients(settings)
            for rows in tables:
                print(f"\n{synthetic_gradients.table_title(rows)}  ({options.runs} estimates each)")
                print(synthetic_gradients.format_table(rows))
            print(f"plot: {folder}/fig1_{objective}_12x3.png")
        settings = synthetic_optimise.OptimiseConfig(
            **shared, iterations=options.iterations, seeds=options.seeds, out=out / "optimise"
        )
        folder, table, methods = synthetic_optimise.run_optimise(settings)
        print(f"\noptimise, D = 200, {options.iterations} iterations, {options.seeds} seeds")
        print(synthetic_optimise.format_progress(table, methods, options.iterations))
        print(
            f"(`catlog optimise` runs {synthetic_optimise.OptimiseConfig.iterations} iterations and also reports "
            f"when each method closes {synthetic_optimise.GAP_FRACTION:.0%} of the gap)"
        )
        print(f"plot: {folder}/fig2_optimise.png")
        print(f"\nall results in {out}/")
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog demo`` (without the common ones)."""
    parser.add_argument("--runs", type=int, default=100, help="repeated estimates per estimator in gradients")
    parser.add_argument("--iterations", type=int, default=50, help="iterations of optimise")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of optimise")


def build_config(args: argparse.Namespace) -> DemoConfig:
    """The config of the parsed ``catlog demo`` options; one torch thread unless ``--threads`` says otherwise."""
    config = common.config_from_args(DemoConfig, args)
    return config if config.threads is not None else dataclasses.replace(config, threads=1)


COMMANDS = (
    common.Command(
        "demo",
        help="quick version of gradients and optimise (about half a minute on 2 CPU cores)",
        description=__doc__,
        add_options=add_options,
        config=build_config,
        run=main,
    ),
)
