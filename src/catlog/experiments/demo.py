"""``catlog demo``: a quick tour of both synthetic experiments (about half a minute on 2 CPU cores).

1. ``catlog gradients`` on one config (``D = 12, K = 3``) with fewer repeated
   estimates: bias and variance of IndeCateR (1 sample) against REINFORCE, RLOO
   and Gumbel-Softmax (1000 samples), for the paper's separable ``f`` and for
   the nonseparable one.
2. ``catlog optimise`` with fewer iterations and seeds: ``E[f]`` at the start and at
   the end, the share of the gap to the optimum each of figure 2's four methods closed,
   and their time.

It runs those two commands through the command line (they print their tables) into
``<out>/gradients-<f>/`` and ``<out>/optimise/``; without the shorter settings, they are
the full protocols.
Unlike the other commands, ``demo`` runs torch on one thread unless ``--threads`` says
otherwise: these tensors are small, and extra threads only contend for the cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from catlog.experiments import cli, run_folder
from catlog.experiments.options import COMMON_GROUP, Command, RunOptions, declared, option, option_argv
from catlog.experiments.problems.figure1 import OBJECTIVES


@dataclass(frozen=True, kw_only=True)
class DemoConfig(RunOptions):
    """Settings of ``catlog demo``: repeated estimates of gradients, iterations and seeds of optimise."""

    runs: int = option(100, "repeated estimates per estimator in gradients", minimum=2)
    iterations: int = option(50, "iterations of optimise", minimum=1)
    seeds: int = option(2, "seeds of optimise", minimum=1)
    threads: int | None = option(1, "torch CPU threads (these tensors are small)", minimum=1, group=COMMON_GROUP)


def main(options: DemoConfig) -> int:
    """Run the short versions of ``gradients`` (both objectives) and ``optimise`` through the command
    line, into sub-folders of the demo's run folder; each prints its tables."""
    shared = option_argv({name: getattr(options, name) for name, *_ in declared(RunOptions) if name != "out"})
    with run_folder.open_command_run(options, "demo") as run:
        out = run.path
        runs = [
            ["gradients", "--configs", "12x3", "--f", objective, "--runs", str(options.runs)]
            + ["--out", str(out / f"gradients-{objective}")]
            for objective in OBJECTIVES
        ]
        runs.append(["optimise", "--iterations", str(options.iterations), "--seeds", str(options.seeds)])
        runs[-1] += ["--out", str(out / "optimise")]
        for argv in runs:
            status = cli.main([*argv, *shared])
            if status:
                return status
        print(f"\nall results in {out}/")
    return 0


COMMAND = Command(
    "demo",
    help="quick version of gradients and optimise (about half a minute on 2 CPU cores)",
    description=__doc__ or "",
    config=DemoConfig,
    run=main,
)
