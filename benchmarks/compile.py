"""One gradient step compiled with ``torch.compile`` against eager, with validation on and off.

Usage::

    python benchmarks/compile.py --threads 1 --device cpu [--repeats 30] [--sync-debug]
        [--config fig1-3x100 ...] [--estimator TEXT ...] [--fallback-random]

A step is ``bench.gradient_step`` (``loss = est(f, logits).sum(); loss.backward()``) on
the configs of ``benchmarks/bench.py``: by default the paper's synthetic ones (figure 1's
``f(x) = sum_d |x_d - b_d|`` at D x K = 12 x 3, 6 x 10 and 3 x 100; figure 2's
``f(x) = mean_d (x_d - 0.499)^2`` at D=200, K=2), and with ``--config dvae`` the DVAE step
with IndeCateR(2), unchunked and in chunks (:data:`DVAE_ESTIMATORS`). ``--estimator TEXT``
keeps the estimators whose name contains ``TEXT``. For each estimator it times:

- ``eager``: validation on (the default);
- ``eager, no validation``: ``validate_args=False``;
- ``compiled``: the loss without validation compiled by ``torch.compile(fullgraph=True)``
  (``bench.compiled_loss``: inductor; AOTAutograd compiles its backward), then
  ``backward()``; its compile time (the first call) is reported apart.

Times are the median over ``--repeats`` calls after one warm-up call (``bench.timings``), in ms.
``--sync-debug`` (CUDA only) runs every step without validation under
``torch.cuda.set_sync_debug_mode("error")``: a host synchronisation raises.
``--fallback-random`` sets ``torch._inductor.config.fallback_random``: compiled code then
draws all its random numbers with torch's generator instead of inductor's per-element Philox
(the library already does so for its own draws of 2,048 numbers or more: see
``docs/performance_guide.md``). The compile time includes inductor's cache: run with
``TORCHINDUCTOR_CACHE_DIR`` set to an empty folder for a cold compile.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import bench
import catlog
from catlog.experiments.problems import Problem

CONFIGS = ("fig1-12x3", "fig1-6x10", "fig1-3x100", "fig2")

DVAE_ESTIMATORS: dict[str, Callable[[bool], catlog.Estimator]] = {
    "IndeCateR 2": lambda validate: catlog.IndeCateR(2, validate_args=validate),
    f"IndeCateR 2, chunks of {bench.DVAE_CHUNK_ROWS}": lambda validate: catlog.IndeCateR(
        2, chunk_size=bench.DVAE_CHUNK_ROWS, validate_args=validate
    ),
}

ESTIMATORS: dict[str, Callable[[bool], catlog.Estimator]] = {
    "IndeCateR 2": lambda validate: catlog.IndeCateR(2, validate_args=validate),
    "REINFORCE 1000": lambda validate: catlog.REINFORCE(1000, validate_args=validate),
    "RLOO 2": lambda validate: catlog.RLOO(2, validate_args=validate),
    "RLOO 800": lambda validate: catlog.RLOO(800, validate_args=validate),
    "GS 800": lambda validate: catlog.GumbelSoftmax(800, validate_args=validate),
}


def median_ms(problem: Problem, estimator: catlog.Estimator, device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` gradient steps in ms (``bench.timings``)."""
    return bench.timings(lambda: bench.gradient_step(problem, estimator), device, 0.0, repeats, repeats)["median_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: raise on any host synchronisation")
    parser.add_argument("--config", action="append", choices=[*CONFIGS, "dvae"], help="repeat for several")
    parser.add_argument("--estimator", action="append", help="only estimators whose name contains this text")
    parser.add_argument("--fallback-random", action="store_true", help="torch's generator in compiled code")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._inductor.config.fallback_random = args.fallback_random
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, device {device}, {args.threads} thread(s); times in ms (median of {args.repeats})"
    )
    print(f"{'config':12} {'estimator':26} {'eager':>9} {'eager, no validation':>21} {'compiled':>9} {'compile s':>10}")
    for config in args.config or CONFIGS:
        problem = bench.CONFIGS[config](device, torch.float32)
        estimators = DVAE_ESTIMATORS if config == "dvae" else ESTIMATORS
        for name, make in estimators.items():
            if args.estimator and not any(text in name for text in args.estimator):
                continue
            eager = median_ms(problem, make(True), device, args.repeats)
            unchecked = make(False)
            if args.sync_debug:
                torch.cuda.set_sync_debug_mode("error")
            unchecked_ms = median_ms(problem, unchecked, device, args.repeats)
            if args.sync_debug:
                torch.cuda.set_sync_debug_mode("default")
            torch._dynamo.reset()
            compiled = bench.compiled_loss(problem, fullgraph=True)
            start = time.perf_counter()
            bench.gradient_step(compiled, unchecked)
            compile_s = time.perf_counter() - start
            compiled_ms = median_ms(compiled, unchecked, device, args.repeats)
            print(f"{config:12} {name:26} {eager:9.3f} {unchecked_ms:21.3f} {compiled_ms:9.3f} {compile_s:10.1f}")


if __name__ == "__main__":
    main()
