"""Which eager gradient steps wait on the device: host syncs under ``torch.cuda.set_sync_debug_mode("error")``.

Usage::

    python benchmarks/host_syncs.py --device cuda [--config fig2 ...]

Runs one step of ``benchmarks/bench.py`` (logits, estimate, loss, ``backward()``) per
estimator (IndeCateR, REINFORCE, RLOO, Gumbel-Softmax at the config's sample counts),
warmed up once outside the check, with argument validation off (validation reads
values back to the host on purpose). On CUDA every step runs with the sync debug mode
at ``"error"``, so the first synchronising call raises, and the line reports its
message. On CPU there is no device to wait for; the step runs under a dispatch mode
that counts the ATen ops which read a tensor's value back to the host
(:data:`READS_BACK`: what synchronises on CUDA) and reports the first. Exits 1 when a
step synchronised.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import bench
import catlog
from catlog.experiments.options import add_common_options, apply_common_options
from catlog.experiments.problems import Problem

ESTIMATORS = ("IndeCateR", "REINFORCE", "RLOO", "GS")
READS_BACK = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "repeat_interleave"})
"""ATen ops whose result needs a value (or a size) from the device: a host sync on CUDA."""


class ReadBacks(TorchDispatchMode):
    """Records the ATen ops of :data:`READS_BACK` dispatched while active (``self.found``)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if name in READS_BACK:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def synchronises(problem: Problem, estimator: catlog.Estimator, device: torch.device) -> str | None:
    """The message of the first host sync of one step (on CPU: the ops that read back), ``None`` if none."""
    bench.gradient_step(problem, estimator)  # warm-up: first-call allocations may sync legitimately
    bench.synchronise(device)
    if device.type != "cuda":
        with ReadBacks() as reads:
            bench.gradient_step(problem, estimator)
        return f"reads back: {', '.join(reads.found)}" if reads.found else None
    torch.cuda.set_sync_debug_mode("error")
    try:
        bench.gradient_step(problem, estimator)
    except RuntimeError as error:
        return str(error).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Check every selected case; print one line each; exit 1 if any step synchronised."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", action="append", choices=list(bench.CONFIGS), help="default: fig1-12x3, fig2 and dvae"
    )
    add_common_options(parser)
    options = parser.parse_args(argv)
    device, dtype = apply_common_options(options)
    print(f"device {device}, argument validation off")
    configs = options.config or ["fig1-12x3", "fig2", "dvae"]
    found = 0
    catlog.Estimator.set_default_validate_args(False)
    try:
        for case in bench.CASES:
            if case.config not in configs or not case.label.startswith(ESTIMATORS):
                continue
            message = synchronises(bench.CONFIGS[case.config](device, dtype), case.make(), device)
            found += message is not None
            status = "no sync" if device.type == "cuda" else "no read-back op"
            print(f"{case.config:12s} {case.label:28s} {message or status}")
    finally:
        catlog.Estimator.set_default_validate_args(True)  # the library's initial default
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
