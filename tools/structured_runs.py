"""The runs of docs/results.md, "Beyond the paper: structured problems", one after another in one process.

3 seeds x 8 estimators (SCateR and SCateR per variable with N = 2; REINFORCE, RLOO and GRPO
with N = 2 samples, -s, and D*K*N, -f) on FrozenLake 8x8 (return + progress shaping),
CliffWalking (return) and arithmetic generation, each run BUDGET CPU seconds of training on
one thread; then SCateR, RLOO-s, GRPO-s and RLOO-f on arithmetic for 30 CPU seconds.
A finished run (its summary.json) is skipped; checkpoints are deleted.

Run from the repository root, niced: ``nice -n 19 python tools/structured_runs.py [BUDGET]``
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

from catlog.experiments import cli

ESTIMATORS = ("scater", "scater-pv", "reinforce-s", "reinforce-f", "rloo-s", "rloo-f", "grpo-s", "grpo-f")
PROBLEMS = {
    "plan/frozenlake8x8": ["plan", "--env", "FrozenLake-v1", "--map", "8x8", "--shaping", "1", "--eval-samples", "128"],
    "plan/cliffwalking": ["plan", "--env", "CliffWalking-v1", "--eval-samples", "128"],
    "generate/arithmetic": ["generate", "--task", "arithmetic", "--eval-samples", "32"],
}
# A longer budget on arithmetic for the four estimators that lead at 6 s or at equal evaluations.
LONGER = ("generate/arithmetic-30s", PROBLEMS["generate/arithmetic"], ("scater", "rloo-s", "grpo-s", "rloo-f"), "30")
COMMON = [
    "--samples",
    "2",
    "--threads",
    "1",
    "--log-every",
    "10",
    "--variance-at",
    "0",
    "20",
    "--variance-repeats",
    "8",
]


def run(problem: str, options: list[str], estimator: str, seed: int, budget: str) -> None:
    """One run into ``docs/runs/PROBLEM/ESTIMATOR-seedSEED``, unless it is there already."""
    folder = Path("docs/runs") / problem / f"{estimator}-seed{seed}"
    if (folder / "summary.json").is_file():
        return
    arguments = [*options, *COMMON, "--time-budget", budget, "--estimator", estimator]
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main([*arguments, "--seed", str(seed), "--out", str(folder), "--overwrite"])
    (folder / "checkpoint.pt").unlink(missing_ok=True)
    (folder / ".lock").unlink(missing_ok=True)
    print(f"{folder}: exit {status}", flush=True)


def main(budget: str = "6") -> int:
    for seed in range(3):
        for estimator in ESTIMATORS:
            for problem, options in PROBLEMS.items():
                run(problem, options, estimator, seed, budget)
    problem, options, longer_estimators, longer_budget = LONGER
    for seed in range(3):
        for estimator in longer_estimators:
            run(problem, options, estimator, seed, longer_budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
