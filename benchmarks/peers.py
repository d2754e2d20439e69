"""The per-call floor: our REINFORCE and RLOO at ``N = 2`` against pydrobert-pytorch's ``reinforce``, in one process.

Usage::

    python benchmarks/peers.py [--rounds 15] [--block-seconds 0.3] [--problem NAME ...]

pydrobert-pytorch (0.3, the version on PyPI) gives a function,
``reinforce(fb, b, logits, dist)``, that returns the score-function gradient of the logits
for samples ``b`` and their values ``fb`` the caller has drawn and evaluated; RLOO is that
function with the leave-one-out mean subtracted from ``fb`` first (its docstring's
baseline). Install it beside torch without its dependencies
(``pip install --no-deps pydrobert-pytorch``): it imports torch only.

A step on each side is the whole gradient step a user writes: sample, evaluate ``f``,
the logits' gradient and the pathwise gradient of ``f``'s parameters, ``backward()``:

- ours: ``est(f, logits).sum().backward()`` with validation on (the default) and off
  (``validate_args=False``); binary variables as logits ``[*B, D, 2]``;
- theirs: ``b`` drawn by ``torch.distributions`` (``Bernoulli`` on logits ``[*B, D]``,
  ``Categorical`` on ``[*B, D, K]``), ``fb = f(b)``, ``g = reinforce(fb - c, b, logits, dist)``
  with ``c`` the baseline (RLOO) or 0 (``fb - c`` broadcast to the shape of ``b``, as it
  takes it), then ``logits.backward(g.mean(0))`` and ``fb.mean(0).sum().backward()`` for
  ``f``'s parameters.

Problems, like the peers' tests: ``categorical`` (``D = 10``, ``K = 5``,
``f = sum_d (x_d - t_d)^2``), ``binary`` (``D = 200``, ``f = mean_d (x_d - 0.499)^2``),
``decoder`` (``D = 200`` binary latents of a batch of 16, a 200-256-784 decoder and
the Bernoulli log-likelihood of 16 random binary images).

A round times one block of calls of every step in a rotating order; a block's time is
the process CPU time per call (one thread: robust to other processes on the machine)
and its wall time per call. The table gives per problem and estimator the medians over
rounds of ours/theirs, validation on and off, with their ranges, and of ``f`` alone/theirs:
``f`` on two fixed samples and, for the decoder, the backward pass of its parameters, which
both sides do (a floor under any estimator's ratio).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydrobert.torch.estimators import reinforce

import catlog
from catlog.experiments import common

NUM_SAMPLES = 2


@dataclass(frozen=True)
class Problem:
    """Logits of both parametrisations, ``f`` on samples and the parameters ``f`` uses."""

    ours: torch.Tensor  # [*B, D, K] (K = 2 for binary variables)
    theirs: torch.Tensor  # [*B, D, K], or [*B, D] Bernoulli logits
    dist: str  # pydrobert's name: "bern" or "cat"
    f: Callable[[torch.Tensor], torch.Tensor]
    parameters: list[torch.Tensor]


def categorical() -> Problem:
    """``D = 10`` variables of ``K = 5`` categories, ``f = sum_d (x_d - t_d)^2``."""
    logits = torch.randn(10, 5)
    target = torch.randint(5, (10,)).float()
    return Problem(
        logits.clone().requires_grad_(),
        logits.clone().requires_grad_(),
        "cat",
        lambda x: (x.float() - target).pow(2).sum(-1),
        [],
    )


def binary() -> Problem:
    """``D = 200`` binary variables, ``f = mean_d (x_d - 0.499)^2`` (figure 2)."""
    logits = torch.randn(200)
    return Problem(
        F.pad(logits.unsqueeze(-1), (1, 0)).requires_grad_(),
        logits.clone().requires_grad_(),
        "bern",
        lambda x: (x.float() - 0.499).pow(2).mean(-1),
        [],
    )


def decoder() -> Problem:
    """200 binary latents per image of a batch of 16, a 200-256-784 decoder, Bernoulli log-likelihood."""
    network = torch.nn.Sequential(torch.nn.Linear(200, 256), torch.nn.ReLU(), torch.nn.Linear(256, 784))
    images = (torch.rand(16, 784) < 0.3).float()
    logits = torch.randn(16, 200)

    def f(x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            network(x.float()), images.expand(x.shape[0], -1, -1), reduction="none"
        ).sum(-1)

    return Problem(
        F.pad(logits.unsqueeze(-1), (1, 0)).requires_grad_(),
        logits.clone().requires_grad_(),
        "bern",
        f,
        list(network.parameters()),
    )


PROBLEMS = {"categorical": categorical, "binary": binary, "decoder": decoder}


def our_step(problem: Problem, estimator: catlog.Estimator) -> Callable[[], None]:
    """``est(f, logits).sum().backward()``, gradients cleared first."""

    def step() -> None:
        for tensor in (problem.ours, *problem.parameters):
            tensor.grad = None
        estimator(problem.f, problem.ours).sum().backward()

    return step


def their_step(problem: Problem, leave_one_out: bool) -> Callable[[], None]:
    """pydrobert's ``reinforce`` with the caller's sampling, baseline and ``backward()`` (see the module doc)."""
    logits = problem.theirs
    if problem.dist == "bern":

        def draw() -> torch.Tensor:
            return torch.distributions.Bernoulli(logits=logits).sample((NUM_SAMPLES,))

    else:

        def draw() -> torch.Tensor:
            return torch.distributions.Categorical(logits=logits).sample((NUM_SAMPLES,))

    def step() -> None:
        for tensor in (logits, *problem.parameters):
            tensor.grad = None
        with torch.no_grad():
            b = draw()
        fb = problem.f(b)
        weights = fb.detach()
        if leave_one_out:
            weights = weights - (weights.sum(0) - weights) / (NUM_SAMPLES - 1)
        expanded = logits.detach().expand(NUM_SAMPLES, *logits.shape).clone().requires_grad_()
        gradient = reinforce(weights.unsqueeze(-1).expand(b.shape), b, expanded, problem.dist).mean(0)
        if problem.parameters:
            fb.mean(0).sum().backward()
        logits.backward(gradient)

    return step


def floor_step(problem: Problem) -> Callable[[], None]:
    """What both sides must do whatever the estimator: ``f`` on ``N`` fixed samples and, where ``f``
    has parameters, the backward pass of their mean; a floor under either side's time."""
    with torch.no_grad():
        samples = torch.distributions.Bernoulli(logits=problem.theirs).sample((NUM_SAMPLES,))
        if problem.dist == "cat":
            samples = torch.distributions.Categorical(logits=problem.theirs).sample((NUM_SAMPLES,))

    def step() -> None:
        for tensor in problem.parameters:
            tensor.grad = None
        values = problem.f(samples)
        if problem.parameters:
            values.mean(0).sum().backward()

    return step


def block(step: Callable[[], None], calls: int) -> tuple[float, float]:
    """Process CPU seconds and wall seconds per call over ``calls`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        step()
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def measure(problem_name: str, rounds: int, block_seconds: float) -> list[list[str]]:
    """Rows ``[problem, estimator, on/theirs CPU, off/theirs CPU, floor/theirs CPU, on/theirs wall,
    off/theirs wall, floor/theirs wall, theirs CPU us]``."""
    torch.manual_seed(0)
    problem = PROBLEMS[problem_name]()
    rows = []
    for name, make, leave_one_out in (
        ("REINFORCE 2", catlog.REINFORCE, False),
        ("RLOO 2", catlog.RLOO, True),
    ):
        steps = {
            "on": our_step(problem, make(NUM_SAMPLES)),
            "off": our_step(problem, make(NUM_SAMPLES, validate_args=False)),
            "theirs": their_step(problem, leave_one_out),
            "floor": floor_step(problem),
        }
        for step in steps.values():
            step()
        calls = max(1, round(block_seconds / max(block(steps["theirs"], 3)[1], 1e-6)))
        order = list(steps)
        times: dict[str, list[tuple[float, float]]] = {side: [] for side in steps}
        for round_index in range(rounds):
            for side in order[round_index % len(order) :] + order[: round_index % len(order)]:
                times[side].append(block(steps[side], calls))
        cells = [problem_name, name]
        for which in (0, 1):
            for side in ("on", "off", "floor"):
                ratios = [ours[which] / theirs[which] for ours, theirs in zip(times[side], times["theirs"])]
                cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        theirs_us = statistics.median(t[0] for t in times["theirs"]) * 1e6
        cells.append(f"{theirs_us:.0f}")
        rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block-seconds", type=float, default=0.3)
    parser.add_argument("--problem", action="append", choices=sorted(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for name in args.problem or list(PROBLEMS) for row in measure(name, args.rounds, args.block_seconds)]
    columns = [
        "problem",
        "estimator",
        "CPU ours/theirs, validation on",
        "CPU, off",
        "CPU, f alone",
        "wall, on",
        "wall, off",
        "wall, f alone",
        "theirs CPU us",
    ]
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds; medians over rounds (min-max)\n")
    print(common.markdown_table(columns, rows))


if __name__ == "__main__":
    main()
