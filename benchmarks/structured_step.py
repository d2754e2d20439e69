"""A planning step and a generation step: SCateR beside RLOO at equal evaluations of ``f``, timed in one run.

Usage::

    python benchmarks/structured_step.py [--samples 2] [--rounds 7] [--calls 3] [--threads 1] [--out DIR]

A step is one estimate of ``E_p[f]`` for the policy of ``catlog plan`` (FrozenLake 8x8,
``D = 20``, ``K = 4``, return plus progress) or of ``catlog generate`` (arithmetic,
``D = 5``, ``K = 14``, 40 training targets) and its ``backward()``. SCateR draws
``--samples`` base samples; RLOO draws as many samples as SCateR evaluates rows of
``f`` (``SCateR.cost``), so both evaluate ``f`` equally often. Each round times a block
of ``--calls`` steps of every case, the order alternating between rounds; a round's
ratio is SCateR/RLOO of the block times (process CPU time, and wall time). The table
gives per problem the median ratio over rounds with its range; absolute times move
with the machine's load, ratios measured together do not (much).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import catlog
from catlog.experiments import common
from catlog.experiments.generate import GenerateConfig
from catlog.experiments.generate import make_task as make_generation
from catlog.experiments.plan import PlanConfig
from catlog.experiments.plan import make_task as make_planning

PROBLEMS: dict[str, Callable[[], object]] = {
    "plan FrozenLake 8x8": lambda: make_planning(PlanConfig(env="FrozenLake-v1", map="8x8", shaping=1.0)),
    "generate arithmetic": lambda: make_generation(GenerateConfig(task="arithmetic")),
}


def step(task, policy: torch.nn.Module, estimator: catlog.Estimator) -> Callable[[], None]:
    """One estimate of ``mean_B E_p[f]`` and its backward pass."""

    def run() -> None:
        policy.zero_grad()
        estimator(task.reward, task.distribution(policy)).mean().backward()

    return run


def block_times(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """Process CPU and wall seconds per call over ``calls`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2, help="SCateR's base samples N")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=3, help="steps per block")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="folder for structured_step.json (optional)")
    args = parser.parse_args(argv)
    common.apply_threads(args.threads)
    cases = {}
    for name, make in PROBLEMS.items():
        task = make()
        torch.manual_seed(0)
        policy = task.policy(64)
        scater = catlog.SCateR(args.samples)
        evaluations = scater.cost(task.num_variables, task.num_categories).evaluations
        rloo = catlog.RLOO(evaluations)
        cases[name] = {
            "evaluations": evaluations,
            "SCateR": step(task, policy, scater),
            "RLOO": step(task, policy, rloo),
        }
        for fn in (cases[name]["SCateR"], cases[name]["RLOO"]):
            fn()  # warm-up
    ratios: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in cases}
    for round_index in range(args.rounds):
        for name, case in cases.items():
            order = ("SCateR", "RLOO") if round_index % 2 == 0 else ("RLOO", "SCateR")
            times = {method: block_times(case[method], args.calls) for method in order}
            ratios[name]["cpu"].append(times["SCateR"][0] / times["RLOO"][0])
            ratios[name]["wall"].append(times["SCateR"][1] / times["RLOO"][1])
    rows, result = [], {}
    for name, case in cases.items():
        summary = {clock: (statistics.median(v), min(v), max(v)) for clock, v in ratios[name].items()}
        result[name] = {"evaluations": case["evaluations"], **{k: list(v) for k, v in summary.items()}}
        rows.append(
            [
                name,
                f"SCateR({args.samples}) vs RLOO({case['evaluations']})",
                *(f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in summary.values()),
            ]
        )
    columns = ["problem", "estimators (equal f rows)", "CPU time ratio SCateR/RLOO", "wall time ratio"]
    print(common.markdown_table(columns, rows), end="")
    if args.out is not None:
        common.write_json(
            args.out / "structured_step.json", {"arguments": vars(args) | {"out": str(args.out)}, **result}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
