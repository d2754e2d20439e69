"""What the process settings do to the large DVAE steps: the allocator, and ``chunk_size``.

Usage::

    python benchmarks/process_settings.py [--estimator rloo --estimator gs] [--chunk 50 ...]
        [--setting plain ...] [--rounds 3] [--steps 3]

Each variant (a process setting, an estimator, a chunk size) runs in a fresh process,
at one torch thread: it builds the DVAE step of ``benchmarks/bench.py`` (batch 100,
decoder 200-256-384-784), warms up one step and times ``--steps`` more. A round runs every
variant once, in a rotating order; the table gives per variant the medians over rounds of
the process CPU time per step (one thread: the wall time it would take alone), its ratio to
the plain unchunked process of the same round, the minor page faults per step and the peak
resident memory. Settings (:data:`SETTINGS`):

- ``plain``: glibc's ``malloc`` as a user's script gets it;
- ``keep-freed``: ``catlog.experiments.allocator.keep_freed_memory()`` (``mallopt`` in the
  process, as every ``catlog`` command does);
- ``tunables``: the same two settings from the environment,
  ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``;
- ``jemalloc``, ``tcmalloc``: ``LD_PRELOAD`` of ``libjemalloc.so.2`` or
  ``libtcmalloc_minimal.so.4`` (Debian's ``libjemalloc2``, ``libtcmalloc-minimal4``), skipped
  when the library is not installed.
"""

from __future__ import annotations

import argparse
import ctypes.util
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from catlog.experiments import common

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")
SETTINGS: dict[str, dict[str, str]] = {
    "plain": {},
    "keep-freed": {},
    "tunables": {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"},
    "jemalloc": {"LD_PRELOAD": str(LIBRARIES / "libjemalloc.so.2")},
    "tcmalloc": {"LD_PRELOAD": str(LIBRARIES / "libtcmalloc_minimal.so.4")},
}

CHILD = """
import json, resource, sys, time
import torch
sys.path.insert(0, {benchmarks!r})
import bench, catlog
from catlog.experiments import allocator
if {keep!r}:
    allocator.keep_freed_memory()
torch.set_num_threads(1)
problem = bench.dvae(torch.device("cpu"), torch.float32)
make = {{"rloo": catlog.RLOO, "gs": catlog.GumbelSoftmax}}[{estimator!r}]
estimator = make(800, chunk_size={chunk!r})
bench.gradient_step(problem, estimator)
cpu, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({steps!r}):
    bench.gradient_step(problem, estimator)
print(json.dumps({{
    "cpu": (time.process_time() - cpu) / {steps!r},
    "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / {steps!r},
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}}))
"""


def run_variant(setting: str, estimator: str, chunk: int | None, steps: int) -> dict[str, float]:
    """One fresh process of ``setting`` timing ``steps`` DVAE steps of ``estimator`` (800 samples)."""
    script = CHILD.format(
        benchmarks=str(Path(__file__).resolve().parent),
        keep=setting == "keep-freed",
        estimator=estimator,
        chunk=chunk,
        steps=steps,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", **SETTINGS[setting]}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def available(setting: str) -> bool:
    """Whether the preloaded library of ``setting`` exists (glibc settings always apply on glibc)."""
    preload = SETTINGS[setting].get("LD_PRELOAD")
    return (preload is None or Path(preload).exists()) and ctypes.util.find_library("c") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimator", action="append", choices=["rloo", "gs"])
    parser.add_argument("--chunk", action="append", type=int, help="chunk sizes beside unchunked (default 50)")
    parser.add_argument("--setting", action="append", choices=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    settings = [setting for setting in args.setting or list(SETTINGS) if available(setting)]
    chunks: list[int | None] = [None, *(args.chunk or [50])]
    variants = list(itertools.product(args.estimator or ["rloo", "gs"], settings, chunks))
    results: dict[tuple[str, str, int | None], list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_index in range(args.rounds):
        shift = round_index % len(variants)
        for estimator, setting, chunk in variants[shift:] + variants[:shift]:
            results[estimator, setting, chunk].append(run_variant(setting, estimator, chunk, args.steps))
    rows = []
    for (estimator, setting, chunk), runs in results.items():
        baseline = results[estimator, "plain", None]
        ratios = [run["cpu"] / base["cpu"] for run, base in zip(runs, baseline)]
        rows.append(
            [
                {"rloo": "RLOO 800", "gs": "GS 800"}[estimator],
                setting,
                "-" if chunk is None else chunk,
                f"{statistics.median(run['cpu'] for run in runs) * 1e3:.0f}",
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{statistics.median(run['faults'] for run in runs):.0f}",
                f"{statistics.median(run['peak_mib'] for run in runs):.0f}",
            ]
        )
    columns = ["DVAE step", "process", "chunk_size", "CPU ms/step", "CPU / plain unchunked", "faults/step", "peak MiB"]
    print(f"{args.rounds} rounds of {args.steps} steps, 1 thread; load average {os.getloadavg()}\n")
    print(common.markdown_table(columns, rows))


if __name__ == "__main__":
    main()
