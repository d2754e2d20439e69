"""One gradient step compiled with ``torch.compile`` against eager, with validation on and off.

Usage::

    python benchmarks/compile.py --threads 1 --device cpu [--repeats 30] [--sync-debug]

A step is ``loss = est(f, logits).mean(); loss.backward()`` on the paper's synthetic
configs (figure 1's ``f(x) = sum_d |x_d - b_d|`` at D=12, K=3; figure 2's
``f(x) = mean_d (x_d - 0.499)^2`` at D=200, K=2). For each estimator it times:

- ``eager``: validation on (the default);
- ``eager, no validation``: ``validate_args=False``;
- ``compiled``: the loss ``logits -> est(f, logits).mean()`` without validation compiled by
  ``torch.compile(fullgraph=True)`` (inductor; AOTAutograd compiles its backward), then
  ``backward()``; its compile time (the first call) is reported apart.

Times are the median over ``--repeats`` calls after two warm-up calls, in ms.
``--sync-debug`` (CUDA only) runs every step without validation under
``torch.cuda.set_sync_debug_mode("error")``: a host synchronisation raises.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import catlog

Step = Callable[[torch.Tensor], torch.Tensor]


def fig1_f(num_variables: int, num_categories: int, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Figure 1's ``f(x) = sum_d |x_d - b_d|`` with ``b`` drawn once."""
    target = torch.randint(num_categories, (num_variables,), generator=torch.Generator().manual_seed(0)).to(device)
    return lambda x: (x - target).abs().sum(-1).to(torch.float32)


def fig2_f(x: torch.Tensor) -> torch.Tensor:
    """Figure 2's ``f(x) = mean_d (x_d - 0.499)^2``."""
    return (x.to(torch.float32) - 0.499).pow(2).mean(-1)


CONFIGS: dict[str, tuple[int, int, Callable[[torch.device], Callable[[torch.Tensor], torch.Tensor]]]] = {
    "fig1-12x3": (12, 3, lambda device: fig1_f(12, 3, device)),
    "fig2-200x2": (200, 2, lambda device: fig2_f),
}

ESTIMATORS: dict[str, Callable[[bool], catlog.Estimator]] = {
    "IndeCateR 2": lambda validate: catlog.IndeCateR(2, validate_args=validate),
    "REINFORCE 1000": lambda validate: catlog.REINFORCE(1000, validate_args=validate),
    "RLOO 2": lambda validate: catlog.RLOO(2, validate_args=validate),
    "RLOO 800": lambda validate: catlog.RLOO(800, validate_args=validate),
    "GS 800": lambda validate: catlog.GumbelSoftmax(800, validate_args=validate),
}


def make_loss(estimator: catlog.Estimator, f: Callable[[torch.Tensor], torch.Tensor]) -> Step:
    """``logits -> loss``: what gets compiled (AOTAutograd then compiles its backward too)."""
    return lambda logits: estimator(f, logits).mean()


def with_backward(loss: Step) -> Step:
    """One step: the loss and its ``backward()``."""

    def step(logits: torch.Tensor) -> torch.Tensor:
        value = loss(logits)
        value.backward()
        return value.detach()

    return step


def median_ms(step: Step, logits: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``step(logits)`` in ms, after two warm-up calls."""
    times = []
    for index in range(repeats + 2):
        logits.grad = None
        if logits.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(logits)
        if logits.device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: raise on any host synchronisation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, {args.threads} thread(s); times in ms (median of {args.repeats})"
    )
    print(f"{'config':12} {'estimator':16} {'eager':>9} {'eager, no validation':>21} {'compiled':>9} {'compile s':>10}")
    for config, (num_variables, num_categories, make_f) in CONFIGS.items():
        f = make_f(device)
        logits = torch.randn(num_variables, num_categories, device=device, requires_grad=True)
        for name, make in ESTIMATORS.items():
            eager = median_ms(with_backward(make_loss(make(True), f)), logits, args.repeats)
            unchecked_loss = make_loss(make(False), f)
            if args.sync_debug:
                torch.cuda.set_sync_debug_mode("error")
            unchecked = median_ms(with_backward(unchecked_loss), logits, args.repeats)
            if args.sync_debug:
                torch.cuda.set_sync_debug_mode("default")
            torch._dynamo.reset()
            compiled_step = with_backward(torch.compile(unchecked_loss, fullgraph=True))
            start = time.perf_counter()
            logits.grad = None
            compiled_step(logits)
            compile_s = time.perf_counter() - start
            compiled = median_ms(compiled_step, logits, args.repeats)
            print(f"{config:12} {name:16} {eager:9.3f} {unchecked:21.3f} {compiled:9.3f} {compile_s:10.1f}")


if __name__ == "__main__":
    main()
