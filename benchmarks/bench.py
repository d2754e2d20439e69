"""Time and memory of one gradient estimate for every estimator of the paper's configs.

Usage::

    python benchmarks/bench.py --config all --threads 1 --device cpu [--out DIR]

For each case (a config and an estimator, with the authors' TensorFlow time as
reference) it reports:

- the wall time of one gradient estimate: build the logits (the encoder or
  classifier where there is one), ``est(f, logits)``, the loss and its
  ``backward()``; the first call is excluded (warm-up), then median and
  interquartile range over repeats, and the median process CPU time;
- the floor: the time of ``f`` alone, under ``torch.no_grad()``, on as many rows
  as the estimator evaluates (``est.cost(D, K).evaluations`` rows of the batch);
- the peak memory of one estimate: on CPU the growth of the peak resident set
  size of a fresh subprocess during its first estimate (``VmHWM`` after
  resetting it through ``/proc/self/clear_refs``, minus ``VmRSS`` before); on
  CUDA ``torch.cuda.max_memory_allocated`` growth. ``--memory-after-warm-up`` measures
  the second estimate instead (after one estimate and glibc's ``malloc_trim(0)``), so that
  one-time costs such as ``torch.utils.checkpoint``'s first use are not counted.

It prints a table (times in ms) and writes ``bench.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import catlog
from catlog.experiments import addition, common, dvae_model, synthetic_gradients, synthetic_optimise
from catlog.experiments.dvae import DvaeConfig
from catlog.experiments.options import add_common_options, apply_common_options


@dataclass
class Problem:
    """One config: the loss of one gradient estimate and the objective alone.

    Attributes:
        loss: ``loss(estimator)`` builds the logits (runs the encoder or classifier, if
            any), calls ``estimator(f, logits)`` and returns the scalar to differentiate.
        f: the objective the estimators see, for the floor.
        parameters: every leaf whose ``.grad`` the estimate fills (cleared between repeats).
        batch_shape: ``B``.
        num_variables, num_categories: ``D``, ``K``.
    """

    loss: Callable[[catlog.Estimator], torch.Tensor]
    f: Callable[[torch.Tensor], torch.Tensor]
    parameters: list[torch.Tensor]
    batch_shape: tuple[int, ...]
    num_variables: int
    num_categories: int


@dataclass(frozen=True)
class Case:
    """An estimator at a config, with the TensorFlow reference time (ms) when the issue gives one.

    ``tf_case`` names the same step in the authors' code for the TF worker of
    ``../shared/reference-tf-tools`` (``benchmarks/side_by_side.py``).
    """

    config: str
    label: str
    make: Callable[[], catlog.Estimator]
    tf_ms: float | None
    tf_case: str


def leaf_problem(logits: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> Problem:
    """A problem whose logits ``[D, K]`` are the parameters themselves (figures 1 and 2); loss = the estimate."""
    leaf = logits.detach().clone().requires_grad_()
    return Problem(lambda estimator: estimator(f, leaf).sum(), f, [leaf], (), *leaf.shape)


def figure1(num_variables: int, num_categories: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """Figure 1: ``f(x) = sum_d |x_d - b_d|``, logits ``~ N(0, 1)`` of shape ``[D, K]``."""
    problem = synthetic_gradients.make_problem(num_variables, num_categories, "separable", 0, device, dtype)
    return leaf_problem(problem.logits, problem)


def figure2(device: torch.device, dtype: torch.dtype) -> Problem:
    """Figure 2: ``f(x) = mean_i (x_i - 0.499)^2`` over ``D = 200`` binary variables."""
    return leaf_problem(torch.zeros(200, 2, device=device, dtype=dtype), synthetic_optimise.objective)


def dvae(device: torch.device, dtype: torch.dtype) -> Problem:
    """DVAE step: the protocol's model (200 Bernoulli latents), batch 100 random binary images;
    loss = mean negative ELBO, ``f(z) = -log p(image | z)``."""
    torch.manual_seed(0)
    model = dvae_model.DiscreteVAE().to(device, dtype)
    images = (torch.rand(100, dvae_model.IMAGE_DIM, device=device) < 0.3).to(dtype)
    return Problem(
        lambda estimator: dvae_model.negative_elbo(model, estimator, images).mean(),
        lambda x: model.negative_log_likelihood(x, images),
        list(model.parameters()),
        (100,),
        model.num_latents,
        model.num_categories,
    )


def mnist_addition(digits: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """MNIST addition of ``digits`` digits, batch 10 random images, the protocol's classifier and loss."""
    torch.manual_seed(0)
    model = addition.LeNet().to(device, dtype)
    images = torch.rand(10, digits, 28, 28, device=device, dtype=dtype)
    f = addition.sum_indicator(torch.randint(0, 9 * digits + 1, (10,), device=device))
    return Problem(
        lambda estimator: addition.addition_loss(estimator(f, model(images))),
        f,
        list(model.parameters()),
        (10,),
        digits,
        addition.NUM_CLASSES,
    )


CONFIGS: dict[str, Callable[[torch.device, torch.dtype], Problem]] = {
    "fig1-12x3": lambda device, dtype: figure1(12, 3, device, dtype),
    "fig1-6x10": lambda device, dtype: figure1(6, 10, device, dtype),
    "fig1-3x100": lambda device, dtype: figure1(3, 100, device, dtype),
    "fig2": figure2,
    "dvae": dvae,
    "addition-4": lambda device, dtype: mnist_addition(4, device, dtype),
    "addition-16": lambda device, dtype: mnist_addition(16, device, dtype),
}

DVAE_CHUNK_ROWS = DvaeConfig.chunk_size
SAMPLE_CHUNK_ROWS = 50
"""Sample rows per call of the DVAE decoder for RLOO 800 and GS 800 (``docs/performance_guide.md``)."""
"""IndeCateR's perturbed rows per decoder call in the DVAE case: the default of ``catlog dvae``."""

CASES: tuple[Case, ...] = (
    Case("fig1-12x3", "IndeCateR 1", lambda: catlog.IndeCateR(1), 0.29, "fig1-12x3:ICR1"),
    Case("fig1-12x3", "REINFORCE 1000", lambda: catlog.REINFORCE(1000), 1.05, "fig1-12x3:REINFORCE1000"),
    Case("fig1-12x3", "RLOO 1000", lambda: catlog.RLOO(1000), 1.10, "fig1-12x3:RLOO1000"),
    Case("fig1-12x3", "GS 1000", lambda: catlog.GumbelSoftmax(1000), 0.88, "fig1-12x3:GS1000"),
    Case("fig1-6x10", "IndeCateR 1", lambda: catlog.IndeCateR(1), 0.27, "fig1-6x10:ICR1"),
    Case("fig1-6x10", "REINFORCE 1000", lambda: catlog.REINFORCE(1000), 0.99, "fig1-6x10:REINFORCE1000"),
    Case("fig1-6x10", "RLOO 1000", lambda: catlog.RLOO(1000), None, "fig1-6x10:RLOO1000"),
    Case("fig1-6x10", "GS 1000", lambda: catlog.GumbelSoftmax(1000), None, "fig1-6x10:GS1000"),
    Case("fig1-3x100", "IndeCateR 1", lambda: catlog.IndeCateR(1), 0.27, "fig1-3x100:ICR1"),
    Case("fig1-3x100", "REINFORCE 1000", lambda: catlog.REINFORCE(1000), 1.25, "fig1-3x100:REINFORCE1000"),
    Case("fig1-3x100", "RLOO 1000", lambda: catlog.RLOO(1000), None, "fig1-3x100:RLOO1000"),
    Case("fig1-3x100", "GS 1000", lambda: catlog.GumbelSoftmax(1000), 1.83, "fig1-3x100:GS1000"),
    Case("fig2", "IndeCateR 2", lambda: catlog.IndeCateR(2), 0.45, "fig2:ICR2"),
    Case("fig2", "RLOO 2", lambda: catlog.RLOO(2), 0.30, "fig2:RLOO2"),
    Case("fig2", "RLOO 800", lambda: catlog.RLOO(800), 5.3, "fig2:RLOO800"),
    Case("fig2", "GS 800", lambda: catlog.GumbelSoftmax(800, temperature=0.1), 4.5, "fig2:GS800"),
    Case("dvae", "IndeCateR 2", lambda: catlog.IndeCateR(2), 445.0, "dvae:ICR2"),
    Case(
        "dvae",
        f"IndeCateR 2, chunks of {DVAE_CHUNK_ROWS}",
        lambda: catlog.IndeCateR(2, chunk_size=DVAE_CHUNK_ROWS),
        None,
        "dvae:ICR2",
    ),
    Case("dvae", "IndeCateR 2, pathwise all", lambda: catlog.IndeCateR(2, pathwise="all"), None, "dvae:ICR2"),
    Case(
        "dvae",
        f"IndeCateR 2, pathwise all, chunks of {DVAE_CHUNK_ROWS}",
        lambda: catlog.IndeCateR(2, chunk_size=DVAE_CHUNK_ROWS, pathwise="all"),
        None,
        "dvae:ICR2",
    ),
    Case("dvae", "RLOO 2", lambda: catlog.RLOO(2), 5.4, "dvae:RLOO2"),
    Case("dvae", "RLOO 800", lambda: catlog.RLOO(800), 970.0, "dvae:RLOO800"),
    Case(
        "dvae",
        f"RLOO 800, chunks of {SAMPLE_CHUNK_ROWS}",
        lambda: catlog.RLOO(800, chunk_size=SAMPLE_CHUNK_ROWS),
        None,
        "dvae:RLOO800",
    ),
    Case("dvae", "GS 800", lambda: catlog.GumbelSoftmax(800), 1081.0, "dvae:GS800"),
    Case(
        "dvae",
        f"GS 800, chunks of {SAMPLE_CHUNK_ROWS}",
        lambda: catlog.GumbelSoftmax(800, chunk_size=SAMPLE_CHUNK_ROWS),
        None,
        "dvae:GS800",
    ),
    Case("addition-4", "IndeCateR 10", lambda: addition.make_estimator("indecater", 4), 3.1, "add4:ICR10"),
    Case(
        "addition-4",
        "IndeCateR per variable 10",
        lambda: addition.make_estimator("indecater-pv", 4),
        2.9,
        "add4:ICRPV10",
    ),
    Case("addition-16", "IndeCateR 10", lambda: addition.make_estimator("indecater", 16), 6.9, "add16:ICR10"),
    Case(
        "addition-16",
        "IndeCateR per variable 10",
        lambda: addition.make_estimator("indecater-pv", 16),
        8.1,
        "add16:ICRPV10",
    ),
)


def compiled_loss(problem: Problem, backend: str = "inductor", fullgraph: bool = False) -> Problem:
    """``problem`` with its whole loss (logits, estimate, loss) compiled by ``torch.compile`` for static
    shapes; AOTAutograd compiles its backward. ``fullgraph`` needs argument validation off."""
    return replace(problem, loss=torch.compile(problem.loss, dynamic=False, backend=backend, fullgraph=fullgraph))


def synchronise(device: torch.device) -> None:
    """Wait for queued device work (CUDA) so that timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gradient_step(problem: Problem, estimator: catlog.Estimator) -> None:
    """One gradient estimate: logits, estimate, loss, ``backward()``; clears the previous gradients."""
    for parameter in problem.parameters:
        parameter.grad = None
    problem.loss(estimator).backward()


def floor_rows(problem: Problem, estimator: catlog.Estimator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Random inputs of ``f`` with as many rows as ``estimator`` evaluates: ``[M, *B, D]``.

    Category indices (``LongTensor``), or float category values for Gumbel-Softmax.
    """
    rows = estimator.cost(problem.num_variables, problem.num_categories).evaluations
    x = torch.randint(problem.num_categories, (rows, *problem.batch_shape, problem.num_variables), device=device)
    return x.to(dtype) if isinstance(estimator, catlog.GumbelSoftmax) else x


def timings(
    run: Callable[[], None], device: torch.device, min_time: float, min_repeats: int, max_repeats: int
) -> dict[str, float]:
    """Call ``run`` once (excluded), then repeatedly until ``min_time`` seconds and ``min_repeats``
    calls (or ``max_repeats``); returns median, quartiles (wall, ms) and median CPU time (ms)."""
    run()
    synchronise(device)
    walls: list[float] = []
    cpus: list[float] = []
    started = time.perf_counter()
    while len(walls) < max_repeats and (len(walls) < min_repeats or time.perf_counter() - started < min_time):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        synchronise(device)
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    q1, median, q3 = statistics.quantiles(walls, n=4, method="inclusive") if len(walls) > 1 else walls * 3
    return {
        "median_ms": median,
        "q1_ms": q1,
        "q3_ms": q3,
        "cpu_median_ms": statistics.median(cpus),
        "repeats": len(walls),
    }


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (e.g. ``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def peak_memory_of(run: Callable[[], object], device: torch.device) -> float:
    """Peak memory (MiB) that one first call of ``run`` adds, measured in this process (see module doc)."""
    if device.type == "cuda":
        synchronise(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        synchronise(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) / 1024


def peak_memory_here(
    problem: Problem, estimator: catlog.Estimator, device: torch.device, warm_up: bool = False
) -> float:
    """Peak memory (MiB) that one estimate adds, measured in this process (see module doc).

    With ``warm_up``, one estimate runs first and, on CPU, glibc's ``malloc_trim(0)`` then
    hands the memory it freed back to the system, so that one-time costs (lazy imports and
    initialisation, such as ``torch.utils.checkpoint``'s first use) are not counted.
    """
    if warm_up:
        gradient_step(problem, estimator)
        if device.type == "cpu":
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    return peak_memory_of(lambda: gradient_step(problem, estimator), device)


def run_memory_probe(script: str, probe: Sequence[str], options: argparse.Namespace) -> float | None:
    """Run ``script --memory-probe *probe`` in a fresh CPU subprocess; the MiB it prints last, or ``None``."""
    command = [sys.executable, script, "--memory-probe", *probe, "--dtype", options.dtype]
    if options.threads is not None:
        command += ["--threads", str(options.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory probe {' '.join(probe)} failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return float(done.stdout.strip().splitlines()[-1])


def peak_memory(case_index: int, options: argparse.Namespace) -> float | None:
    """Peak memory (MiB) of one estimate of ``CASES[case_index]``: in a fresh subprocess on CPU."""
    if torch.device(options.device).type == "cuda":
        device, dtype = apply_common_options(options)
        case = CASES[case_index]
        return peak_memory_here(CONFIGS[case.config](device, dtype), case.make(), device, options.memory_after_warm_up)
    warm_up = ["--memory-after-warm-up"] if options.memory_after_warm_up else []
    return run_memory_probe(__file__, [str(case_index), *warm_up], options)


def step_and_floor(
    problem: Problem, estimator: catlog.Estimator, options: argparse.Namespace, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, dict[str, float], dict[str, float]]:
    """``(floor rows, timings of one gradient step, timings of f alone on the floor rows)``."""
    rows = floor_rows(problem, estimator, device, dtype)

    def floor() -> None:
        with torch.no_grad():
            problem.f(rows)

    step = timings(
        lambda: gradient_step(problem, estimator), device, options.min_time, options.min_repeats, options.max_repeats
    )
    return rows, step, timings(floor, device, options.min_time, options.min_repeats, options.max_repeats)


def run_case(case_index: int, options: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Time, floor and peak memory of ``CASES[case_index]``; one row of the results."""
    case = CASES[case_index]
    problem = CONFIGS[case.config](device, dtype)
    estimator = case.make()
    rows, step, base = step_and_floor(problem, estimator, options, device, dtype)
    cost = estimator.cost(problem.num_variables, problem.num_categories)
    return {
        "config": case.config,
        "estimator": case.label,
        "repr": repr(estimator),
        "evaluations": cost.evaluations,
        "tf_ms": case.tf_ms,
        **step,
        "floor_median_ms": base["median_ms"],
        "floor_cpu_median_ms": base["cpu_median_ms"],
        "ratio_tf": None if case.tf_ms is None else step["median_ms"] / case.tf_ms,
        "ratio_floor": step["median_ms"] / base["median_ms"],
        "peak_mib": None if options.no_memory else peak_memory(case_index, options),
    }


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if value < 1000 else f"{value:.0f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (times in ms)."""
    columns = (
        "config | estimator | evals/elem | TF ms | ours ms (IQR) | CPU ms | ours/TF | floor ms | ours/floor | peak MiB"
    )
    cells = [
        [
            r["config"],
            r["estimator"],
            r["evaluations"],
            _number(r["tf_ms"]),
            f"{_number(r['median_ms'])} ({_number(r['q1_ms'])}-{_number(r['q3_ms'])})",
            _number(r["cpu_median_ms"]),
            _number(r["ratio_tf"], 2),
            _number(r["floor_median_ms"]),
            _number(r["ratio_floor"], 2),
            _number(r["peak_mib"]),
        ]
        for r in rows
    ]
    return common.markdown_table(columns.split(" | "), cells)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        action="append",
        choices=["all", *CONFIGS],
        help="config to run; repeat for several (default: all)",
    )
    parser.add_argument("--estimator", action="append", help="only cases whose estimator label contains this text")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per measurement (default 1)")
    parser.add_argument("--min-repeats", type=int, default=5, help="fewest timed repeats (default 5)")
    parser.add_argument("--max-repeats", type=int, default=500, help="most timed repeats (default 500)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--memory-after-warm-up",
        action="store_true",
        help="measure memory on a second estimate, after one warm-up estimate (one-time costs left out)",
    )
    parser.add_argument("--memory-probe", type=int, default=None, help=argparse.SUPPRESS)
    add_common_options(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases, print the table, write ``bench.json``."""
    options = parse_args(argv)
    device, dtype = apply_common_options(options)
    if options.memory_probe is not None:
        case = CASES[options.memory_probe]
        print(peak_memory_here(CONFIGS[case.config](device, dtype), case.make(), device, options.memory_after_warm_up))
        return 0
    torch.manual_seed(options.seed)
    configs = set(CONFIGS) if not options.config or "all" in options.config else set(options.config)
    selected = [
        index
        for index, case in enumerate(CASES)
        if case.config in configs and (not options.estimator or any(text in case.label for text in options.estimator))
    ]
    load_before = os.getloadavg()
    rows = [run_case(index, options, device, dtype) for index in common.progress(selected, desc="cases")]
    table = format_table(rows)
    print(table)
    out = common.default_out(options.out, "bench")
    common.write_json(
        out / "bench.json",
        {
            "device": str(device),
            "dtype": options.dtype,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "rows": rows,
        },
    )
    common.write_text(out / "bench.md", table)
    print(f"wrote {out / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
