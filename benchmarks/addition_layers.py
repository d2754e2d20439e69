"""The MNIST addition step, layer by layer, against this machine's matrix-product rate.

Usage::

    python benchmarks/addition_layers.py [--digits 4 --digits 16] [--rounds 7]

For the addition step of ``benchmarks/bench.py`` (``addition-4``, ``addition-16``: the
protocol's LeNet on a batch of 10 x ``D`` images, ``IndeCateR(10)``), one thread, it times:

- each LeNet layer, forward and backward (the gradient of its parameters, and of its input
  but for the first convolution), on the activations it sees in the step;
- the same arithmetic as one matrix product: a convolution is the product of its unfolded
  input ``[images * out positions, C * k * k]`` with its kernel ``[C * k * k, out channels]``
  (im2col), a dense layer is its own; forward and the two backward products, timed with
  ``torch.mm`` on random matrices of those shapes;
- a large product (``--peak`` rows, 512 x 512), the machine's sgemm rate at one thread;
- the whole step, and the layers' share of it.

After 3 warm-up calls each, each quantity is the median over ``--rounds`` interleaved rounds
of a block's process CPU time per call (one thread: robust to other processes on the machine). The
table gives each layer's FLOP (forward and backward), its time, its rate, and the time of
the same FLOP as matrix products of its shapes and at the peak rate: where a layer's time is
far above its products', the overhead is the layer's (pooling, im2col, small kernels), and
where the products are far above the peak, the shapes are too small for the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import bench
from catlog.experiments import common
from catlog.experiments.addition_model import LeNet


def cpu_per_call(run: Callable[[], object], seconds: float) -> float:
    """Process CPU seconds per call over a block of about ``seconds``."""
    calls, start = 0, time.process_time()
    while time.process_time() - start < seconds or calls < 3:
        run()
        calls += 1
    return (time.process_time() - start) / calls


def product_shapes(layer: torch.nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> tuple[int, int, int]:
    """``(rows, inner, columns)`` of the forward matrix product that does ``layer``'s arithmetic."""
    if isinstance(layer, torch.nn.Conv2d):
        positions = outputs.shape[0] * outputs.shape[2] * outputs.shape[3]
        kernel = layer.weight.shape
        return positions, kernel[1] * kernel[2] * kernel[3], kernel[0]
    return inputs.shape[0], inputs.shape[1], outputs.shape[1]


def layer_steps(model: LeNet, images: torch.Tensor) -> list[tuple[str, Callable[[], None], Callable[[], None], int]]:
    """Per convolution and dense layer: name, its forward and backward step, the same products, FLOP."""
    steps = []
    x = images.reshape(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for index, layer in enumerate(model.layers):
        y = layer(x)
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            rows, inner, columns = product_shapes(layer, x, y)
            needs_input = index > 0
            given = x.detach().requires_grad_(needs_input)
            gradient = torch.randn_like(y)

            def run(
                layer: torch.nn.Module = layer, given: torch.Tensor = given, gradient: torch.Tensor = gradient
            ) -> None:
                layer.zero_grad(set_to_none=True)
                layer(given).backward(gradient)

            a, b, c = torch.randn(rows, inner), torch.randn(inner, columns), torch.randn(rows, columns)
            products = 3 if needs_input else 2  # forward, weight gradient (and input gradient)

            def product(
                a: torch.Tensor = a, b: torch.Tensor = b, c: torch.Tensor = c, products: int = products
            ) -> None:
                a @ b
                a.T @ c
                if products == 3:
                    c @ b.T

            steps.append((f"{index}: {layer}", run, product, 2 * rows * inner * columns * products))
        x = y.detach()
    return steps


def measure(digits: int, rounds: int, block_seconds: float, peak_rows: int) -> list[list[str]]:
    """Rows of the table for ``digits`` digits (see the module doc)."""
    device, dtype = torch.device("cpu"), torch.float32
    problem = bench.CONFIGS[f"addition-{digits}"](device, dtype)
    estimator = next(case for case in bench.CASES if case.config == f"addition-{digits}").make()
    torch.manual_seed(0)
    model = LeNet()
    images = torch.rand(10, digits, 28, 28)
    layers = layer_steps(model, images)
    big = torch.randn(peak_rows, 512), torch.randn(512, 512)
    runs: dict[str, Callable[[], object]] = {
        "step": lambda: bench.gradient_step(problem, estimator),
        "peak": lambda: big[0] @ big[1],
    }
    for name, run, product, _ in layers:
        runs[name], runs[name + " products"] = run, product
    for run in runs.values():  # warm-up: oneDNN builds its kernels on the first calls
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(cpu_per_call(run, block_seconds))
    median = {name: statistics.median(values) for name, values in times.items()}
    peak_rate = 2 * peak_rows * 512 * 512 / median["peak"]
    rows = []
    for name, _, _, flop in layers:
        rows.append(
            [
                str(digits),
                name.split(": ")[1].split("(")[0] + name.split(":")[0],
                f"{flop / 1e6:.1f}",
                f"{median[name] * 1e3:.3f}",
                f"{flop / median[name] / 1e9:.1f}",
                f"{median[name + ' products'] * 1e3:.3f}",
                f"{flop / peak_rate * 1e3:.3f}",
            ]
        )
    layer_total = sum(median[name] for name, *_ in layers)
    rows.append(
        [
            str(digits),
            "whole step (layers' share)",
            f"{sum(flop for *_, flop in layers) / 1e6:.1f}",
            f"{median['step'] * 1e3:.3f} ({layer_total / median['step']:.2f})",
            f"peak {peak_rate / 1e9:.1f}",
            "",
            "",
        ]
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, action="append", choices=[4, 16])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block-seconds", type=float, default=0.2)
    parser.add_argument("--peak", type=int, default=2048, help="rows of the peak-rate product (x 512 x 512)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a plain process: glibc's malloc as it comes
    rows = [
        row for digits in args.digits or [4, 16] for row in measure(digits, args.rounds, args.block_seconds, args.peak)
    ]
    columns = ["D", "layer", "MFLOP fwd+bwd", "CPU ms", "GFLOP/s", "same products ms", "at peak ms"]
    print(f"torch {torch.__version__}, 1 thread, {args.rounds} rounds; medians of CPU time per call\n")
    print(common.markdown_table(columns, rows))


if __name__ == "__main__":
    main()
