"""Our gradient step against the authors' TensorFlow step, timed side by side in one run.

Usage::

    python benchmarks/side_by_side.py --tf-python TF_VENV/bin/python [--tools DIR] [--reference DIR]
        [--config fig2 ...] [--rounds 7] [--block-seconds 0.4] [--compile {f,step}]
        [--settings {plain,experiments} ...] [--out DIR]

Absolute times move twofold between machines, days and loads, so only ratios
measured together mean anything. Both sides run in persistent worker processes:

- ours: this script with ``--worker``, at ``--threads`` torch threads (default 1),
  running the steps of ``benchmarks/bench.py`` (``bench.CASES``: logits, estimate,
  loss, ``backward()``), one worker per process setting of ``--settings`` (default both):
  ``plain``, the library as a user's script runs it (torch's threads set, glibc's
  ``malloc`` as it comes), and ``experiments``, the settings of every ``catlog``
  command (``catlog.experiments.allocator.keep_freed_memory()`` as well);
- TF: ``worker_tf3.py`` of ``--tools`` (default ``../shared/reference-tf-tools``)
  under ``--tf-python``, with ``CATLOG_REF`` = ``--reference`` (default
  ``../shared/reference-tf``), ``--tf-threads`` intra-op threads and
  ``--tf-inter-op-threads`` inter-op threads (default 1 each: with TF's default
  inter-op pool, independent ops of one step run on every core, and "one intra-op
  thread" used 1.6 cores on the DVAE step of this 2-core machine).

The authors' steps are ``tf.function`` graphs; ours run eagerly unless ``--compile``:

- ``--compile step``: the whole loss (logits, estimate, loss) is ``torch.compile``-d
  (inductor; AOTAutograd compiles its backward) with argument validation off
  (``catlog.Estimator.set_default_validate_args(False)``), graph against graph;
- ``--compile f``: only the objective ``f`` is compiled, the estimator runs eagerly
  with validation on, as a user who compiles their model would run it (figures 1
  and 2 only: their logits are the parameters and ``f`` is a plain function).

Each worker builds a case and warms it up (3 calls) before the first timed block.
A round times one block of calls of every case on each side, the order of the sides
rotating from round to round and from case to case; a block's time is
the median of its calls, a round's ratio is ours/TF of the block medians. The
table gives per case and process setting the median of the round ratios with their min-max range, the
median block times, the process CPU time per call on each side (all threads: a
check that each side used one core) and the median of the per-round CPU ratios, and
the load average before and after; ``side_by_side.{csv,json,md}`` go into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import bench
import catlog
from catlog.experiments import common
from catlog.experiments.options import RunOptions, add_common_options, apply_common_options, config_from_args

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WARM_UP_CALLS = 3


class Worker:
    """A persistent timing process that answers ``{"case": ..., "n": ..., "cpu": true}`` JSON lines with
    ``{"wall": [seconds of each call], "cpu": process CPU seconds per call}``."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1
        )
        self.ready = self._answer()

    def _answer(self) -> Any:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError(f"{self.name} worker exited (code {self.process.poll()}) without an answer")
        return json.loads(line)

    def times(self, case: str | int, calls: int) -> tuple[list[float], float]:
        """Wall seconds of each of ``calls`` consecutive calls of ``case`` (built and warmed up on first
        use), and the process CPU seconds per call over them (all threads)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"case": case, "n": calls, "cpu": True}) + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        return answer["wall"], answer["cpu"]

    def close(self) -> None:
        """End the worker (closing its input ends its loop)."""
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


COMPILE_MODES = ("f", "step")
SETTINGS = ("plain", "experiments")


def our_step(
    case: bench.Case, device: torch.device, dtype: torch.dtype, compile_mode: str | None, backend: str = "inductor"
) -> tuple[Callable[[], None], bench.Problem]:
    """One gradient step of ``case`` (``bench.gradient_step``), eager or compiled by ``backend`` (see the module
    doc), and the problem whose parameters it fills with gradients."""
    problem, estimator = bench.CONFIGS[case.config](device, dtype), case.make()
    if compile_mode == "f":
        if problem.batch_shape or len(problem.parameters) != 1:
            raise ValueError(f"--compile f: expected a figure 1 or 2 config (logits as parameters), got {case.config}")
        problem = bench.leaf_problem(problem.parameters[0], torch.compile(problem.f, dynamic=False, backend=backend))
    elif compile_mode == "step":
        problem = bench.compiled_loss(problem, backend)
    return lambda: bench.gradient_step(problem, estimator), problem


def serve_ours(options: argparse.Namespace) -> int:
    """The ``--worker`` loop: time ``bench.CASES[case]`` steps on request (see :class:`Worker`)."""
    if options.settings == ["experiments"]:
        device, dtype = apply_common_options(options)
    else:  # as a user's script: the threads set, nothing else
        run = config_from_args(RunOptions, options)
        if run.threads is not None:
            torch.set_num_threads(run.threads)
        device, dtype = torch.device(run.device), run.torch_dtype
    torch.manual_seed(options.seed)
    if options.compile == "step":
        catlog.Estimator.set_default_validate_args(False)
    # every case's loss (or f) shares its code with the others of its config: one compiled graph each
    torch._dynamo.config.recompile_limit = len(bench.CASES)
    steps: dict[int, Callable[[], None]] = {}
    print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        index = int(request["case"])
        if index not in steps:
            steps[index] = our_step(bench.CASES[index], device, dtype, options.compile, options.compile_backend)[0]
            for _ in range(WARM_UP_CALLS):
                steps[index]()
            bench.synchronise(device)
        walls, calls, cpu_started = [], int(request["n"]), time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            steps[index]()
            bench.synchronise(device)
            walls.append(time.perf_counter() - started)
        print(json.dumps({"wall": walls, "cpu": (time.process_time() - cpu_started) / calls}), flush=True)
    return 0


def start_workers(options: argparse.Namespace) -> dict[str, Worker]:
    """Our workers (this script, ``--worker``), one per process setting, and the TF worker (``worker_tf3.py``),
    by side: the setting's name, or ``"tf"``."""
    ours_command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", options.device]
    ours_command += ["--dtype", options.dtype, "--seed", str(options.seed), "--threads", str(options.threads)]
    if options.compile:
        ours_command += ["--compile", options.compile, "--compile-backend", options.compile_backend]
    ours_env = {**os.environ, "OMP_NUM_THREADS": str(options.threads)}
    workers = {
        setting: Worker(f"ours ({setting})", [*ours_command, "--settings", setting], ours_env)
        for setting in options.settings
    }
    tf_env = {
        **os.environ,
        "CATLOG_REF": str(Path(options.reference).resolve()),
        "OMP_NUM_THREADS": str(options.tf_threads),
        "TF_NUM_INTRAOP_THREADS": str(options.tf_threads),
        "TF_NUM_INTEROP_THREADS": str(options.tf_inter_op_threads),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    tf_command = [options.tf_python, str(Path(options.tools).resolve() / "worker_tf3.py"), str(options.tf_threads)]
    workers["tf"] = Worker("TF", tf_command, tf_env)
    return workers


def block_calls(seconds_per_call: float, block_seconds: float, most: int) -> int:
    """Calls per block: about ``block_seconds`` of work, at least 1 and at most ``most``."""
    return max(1, min(most, round(block_seconds / max(seconds_per_call, 1e-6))))


def measure(selected: Sequence[int], workers: dict[str, Worker], options: argparse.Namespace) -> list[dict[str, Any]]:
    """Interleaved rounds over ``selected`` case indices; one result row per case and process setting of ours
    (see module doc)."""

    def key(side: str, index: int) -> str | int:
        return bench.CASES[index].tf_case if side == "tf" else index

    calls: dict[tuple[str, int], int] = {}
    for index in common.progress(selected, desc="warm-up"):
        for side, worker in workers.items():
            call = statistics.median(worker.times(key(side, index), 3)[0])
            calls[side, index] = block_calls(call, options.block_seconds, options.max_calls)
    # per side and case, per round: (wall median, CPU per call)
    blocks: dict[tuple[str, int], list[tuple[float, float]]] = {pair: [] for pair in calls}
    sides = list(workers)
    for round_index in common.progress(range(options.rounds), desc="rounds"):
        for position, index in enumerate(selected):
            shift = (round_index + position) % len(sides)
            for side in sides[shift:] + sides[:shift]:
                wall, cpu = workers[side].times(key(side, index), calls[side, index])
                blocks[side, index].append((statistics.median(wall), cpu))
    rows = []
    for index in selected:
        case, tf = bench.CASES[index], blocks["tf", index]
        for setting in (side for side in sides if side != "tf"):
            ours = blocks[setting, index]
            ratios = [ours_block[0] / tf_block[0] for ours_block, tf_block in zip(ours, tf)]
            cpu_ratios = [ours_block[1] / tf_block[1] for ours_block, tf_block in zip(ours, tf)]
            rows.append(
                {
                    "config": case.config,
                    "estimator": case.label,
                    "settings": setting,
                    "tf_case": case.tf_case,
                    "ours_ms": statistics.median(block[0] for block in ours) * 1e3,
                    "tf_ms": statistics.median(block[0] for block in tf) * 1e3,
                    "ratio_median": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "ours_cpu_ms": statistics.median(block[1] for block in ours) * 1e3,
                    "tf_cpu_ms": statistics.median(block[1] for block in tf) * 1e3,
                    "cpu_ratio_median": statistics.median(cpu_ratios),
                    "rounds": len(ratios),
                    "ours_calls_per_block": calls[setting, index],
                    "tf_calls_per_block": calls["tf", index],
                }
            )
    return rows


def format_table(rows: Sequence[dict[str, Any]], header: str) -> str:
    """The rows as a Markdown table after a ``header`` paragraph (times in ms)."""
    columns = ["config", "estimator", "process", "ours ms", "TF ms", "ours/TF median", "min-max"]
    columns += ["CPU ms ours / TF", "CPU ratio"]
    cells = [
        [
            r["config"],
            r["estimator"],
            r["settings"],
            f"{r['ours_ms']:.3g}",
            f"{r['tf_ms']:.3g}",
            f"{r['ratio_median']:.2f}",
            f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}",
            f"{r['ours_cpu_ms']:.3g} / {r['tf_cpu_ms']:.3g}",
            f"{r['cpu_ratio_median']:.2f}",
        ]
        for r in rows
    ]
    return f"{header}\n\n" + common.markdown_table(columns, cells)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tf-python", help="python of a venv with TensorFlow 2.21 (required unless --worker)")
    parser.add_argument("--tools", default=str(SHARED / "reference-tf-tools"), help="folder of worker_tf3.py")
    parser.add_argument("--reference", default=str(SHARED / "reference-tf"), help="the authors' code (CATLOG_REF)")
    parser.add_argument("--tf-threads", type=int, default=1, help="TF intra-op threads (default 1; 0 = TF's choice)")
    parser.add_argument(
        "--tf-inter-op-threads",
        type=int,
        default=1,
        help="TF inter-op threads (default 1; 0 = TF's choice, which runs independent ops on every core)",
    )
    parser.add_argument(
        "--config", action="append", choices=["all", *bench.CONFIGS], help="repeat for several (default all)"
    )
    parser.add_argument("--estimator", action="append", help="only cases whose estimator label contains this text")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of alternating blocks (default 7)")
    parser.add_argument("--block-seconds", type=float, default=0.4, help="seconds of calls per block (default 0.4)")
    parser.add_argument("--max-calls", type=int, default=200, help="most calls per block (default 200)")
    parser.add_argument(
        "--compile", choices=COMPILE_MODES, default=None, help="torch.compile our f or whole step (default: eager)"
    )
    parser.add_argument(
        "--compile-backend", default="inductor", help="torch.compile backend with --compile (default inductor)"
    )
    parser.add_argument(
        "--settings",
        action="append",
        choices=SETTINGS,
        help="our process settings, repeat for several (default both: plain, as a user's script; experiments)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    add_common_options(parser)
    parser.set_defaults(threads=1)
    options = parser.parse_args(argv)
    options.settings = options.settings or list(SETTINGS)
    if not options.worker and not options.tf_python:
        parser.error("--tf-python: expected the python of a TensorFlow venv, got nothing")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases side by side, print the table, write ``side_by_side.{csv,json,md}``."""
    options = parse_args(argv)
    if options.worker:
        return serve_ours(options)
    configs = set(bench.CONFIGS) if not options.config or "all" in options.config else set(options.config)
    selected = [
        index
        for index, case in enumerate(bench.CASES)
        if case.config in configs and (not options.estimator or any(text in case.label for text in options.estimator))
    ]
    load_before = os.getloadavg()
    workers = start_workers(options)
    try:
        rows = measure(selected, workers, options)
    finally:
        for worker in workers.values():
            worker.close()
    ours, tf = workers[options.settings[0]], workers["tf"]
    load_after = os.getloadavg()
    settings = {
        "ours_threads": ours.ready["threads"],
        "torch": ours.ready["torch"],
        "tf_intra_op_threads": tf.ready["intra"],
        "tf_inter_op_threads": options.tf_inter_op_threads,
        "tensorflow": tf.ready["tf"],
        "device": options.device,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "rounds": options.rounds,
        "block_seconds": options.block_seconds,
        "compile": options.compile,
        "ours_settings": options.settings,
    }
    header = (
        f"torch {settings['torch']} at {settings['ours_threads']} thread(s) on {options.device}"
        f"{', torch.compile of ' + options.compile if options.compile else ', eager'}; "
        f"TF {settings['tensorflow']} at {settings['tf_intra_op_threads']} intra-op and "
        f"{options.tf_inter_op_threads} inter-op thread(s); "
        f"{os.cpu_count()} CPUs ({settings['machine']}); load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in load_before)} before, {', '.join(f'{x:.2f}' for x in load_after)} after; "
        f"{options.rounds} rounds of ~{options.block_seconds} s blocks."
    )
    table = format_table(rows, header)
    print(table)
    out = common.default_out(options.out, "side-by-side")
    common.write_csv(out / "side_by_side.csv", rows)
    common.write_json(out / "side_by_side.json", {"settings": settings, "rows": rows})
    common.write_text(out / "side_by_side.md", table)
    print(f"wrote {out / 'side_by_side.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
