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

from dataclasses import dataclass

from catlog.experiments import common, run_folder, synthetic_gradients, synthetic_optimise
from catlog.experiments.options import COMMON_GROUP, Command, RunOptions, config_json, option


@dataclass(frozen=True, kw_only=True)
class DemoConfig(RunOptions):
    """Settings of ``catlog demo``: repeated estimates of gradients, iterations and seeds of optimise."""

    runs: int = option(100, "repeated estimates per estimator in gradients", minimum=2)
    iterations: int = option(50, "iterations of optimise", minimum=1)
    seeds: int = option(2, "seeds of optimise", minimum=1)
    threads: int | None = option(1, "torch CPU threads (these tensors are small)", minimum=1, group=COMMON_GROUP)


def main(options: DemoConfig) -> int:
    """Run the short versions of ``gradients`` (both objectives) and ``optimise``; print their tables."""
    shared = {key: getattr(options, key) for key in ("device", "seed", "dtype", "threads", "overwrite")}
    with run_folder.open_run(
        common.default_out(options.out, "demo"), config_json(options), overwrite=options.overwrite
    ) as run:
        out = run.path
        for objective in synthetic_gradients.OBJECTIVES:
            gradients = synthetic_gradients.GradientsConfig(
                **shared, configs=((12, 3),), f=objective, runs=options.runs, out=out / f"gradients-{objective}"
            )
            folder, tables = synthetic_gradients.run_gradients(gradients)
            for rows in tables:
                print(f"\n{synthetic_gradients.table_title(rows)}  ({options.runs} estimates each)")
                print(synthetic_gradients.format_table(rows))
            print(f"plot: {folder}/fig1_{objective}_12x3.png")
        optimise = synthetic_optimise.OptimiseConfig(
            **shared, iterations=options.iterations, seeds=options.seeds, out=out / "optimise"
        )
        folder, table, methods = synthetic_optimise.run_optimise(optimise)
        print(f"\noptimise, D = 200, {options.iterations} iterations, {options.seeds} seeds")
        print(synthetic_optimise.format_table(table, methods))
        print(f"plot: {folder}/fig2_optimise.png")
        print(f"\nall results in {out}/")
    return 0


COMMAND = Command(
    "demo",
    help="quick version of gradients and optimise (about half a minute on 2 CPU cores)",
    description=__doc__ or "",
    config=DemoConfig,
    run=main,
)
