"""Our REBAR and RELAX against pydrobert-pytorch's and storchastic's, in one process: variance and time.

Usage::

    python benchmarks/peers_relax.py [--repeats 1000] [--train-steps 100] [--problems 3x2 4x3 5x4 6x5 binary]

The peers (both on PyPI, the ``peers`` extra; or beside torch without their dependencies, which they do not need here)::

    pip install --no-deps pydrobert-pytorch==0.3.0 storchastic==0.3.7 entmax pyro-ppl pyro-api opt_einsum

storchastic imports ``entmax`` and ``pyro.distributions`` at import time (pyro-ppl needs
``pyro-api`` and ``opt_einsum``; numpy, tqdm and packaging are there already). Importing it
monkey-patches torch for the whole process (``torch.is_tensor``, ``Tensor.to``, ``.le``,
``.gt`` wrapped in Python, and argument validation of ``torch.distributions`` off by
default); this script undoes the patches after the import and puts them back only around
storchastic's own calls, so that the other libraries run on plain torch.

Problems: figure 1's non-separable ``f = (sum_d |x_d - b_d|)^2 / D`` (``catlog compare``'s
``fig1``; ``DxK``: ``D`` variables of ``K`` categories, logits and target from
:func:`figure1.draw` with seed 0) and ``binary``, the same ``f`` on ``D = 12``, ``K = 2``
(``compare``'s ``binary``). ``f`` takes (relaxed) one-hot input, ``[..., D, K] -> [...]``, as
REBAR needs; the gradient is w.r.t. the logits ``[D, K]``, the exact one by enumeration.

Estimators, all with one sample (pydrobert's ``relax`` takes one; REBAR then costs 3
evaluations of ``f`` in every library), the same initial temperature 1 and scale 1
(storchastic's defaults):

- REBAR: ``catlog.REBAR(1, temperature=1, one_hot=True)`` (with and without validation);
  pydrobert's ``relax(f(b), b, logits, z, REBARControlVariate(f, "onehot", 1, 1), "onehot")``;
  storchastic's ``method.REBAR`` on ``OneHotCategorical(probs=softmax(logits))`` (its variance
  gradient reads the gradient of the ``probs``, so it needs them as the parameter).
- RELAX: the experiments' default MLP surrogate (``estimators.Surrogate``), one initial copy
  for each library: ``catlog.RELAX(1, surrogate, temperature=1)``; pydrobert's ``relax`` with
  ``c(z) = surrogate(softmax(z / temperature))`` and a learned log temperature; storchastic's
  ``method.RELAX(c_phi=surrogate)`` (which also learns a scale ``eta`` of ``c``).

Each library trains its control variate's parameters by its own single-sample variance
gradient (``d |g|^2 / d phi``; storchastic's is that of its ``probs`` gradient). Two states are
measured: ``untrained`` (the initial parameters), and ``trained`` after ``--train-steps``
Adam steps (``--lr``) of each, at the problem's fixed logits.

A measurement draws ``--repeats`` estimates of every estimator in a rotating order: one
estimate is the whole call a user makes, timed in process CPU time (one thread): the
logits come out of a model (here ``leaf.clone()``), the estimate reaches the model's
parameters (``est(f, logits).backward()``; pydrobert's ``logits.backward(g)`` after its
``(g ** 2).sum().backward()``; storchastic's ``storch.backward()``) and the variance
gradient the control variate's ``.grad``.
Per estimator: the variance (:func:`catlog.gradient_variance`), its ratio to ours (catlog's
row of the same family with validation on) with the ratio's standard error (from the
relative standard errors of both variances, :func:`relative_error`; catlog's row with
validation off is the same estimator, a check of that noise), the squared bias over its noise floor
(:func:`catlog.squared_bias` / :func:`catlog.squared_bias_floor`: about 1 for an unbiased
estimator), and the CPU time per estimate over ours (median over blocks of
:data:`BLOCK` rounds of the ratio of their summed times).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from pydrobert.torch import estimators as pydrobert
from torch import nn

import catlog
from catlog.experiments import common
from catlog.experiments.estimators import Surrogate
from catlog.experiments.problems import figure1

BLOCK = 25
"""Rounds per timing block (the time ratio is the median over blocks)."""
TEMPERATURE = 1.0
"""The initial temperature of every estimator (storchastic's default)."""


class _StorchPatches:
    """storchastic's process-wide patches of torch, applied only inside :meth:`active`."""

    def __init__(self) -> None:
        self.names = ("is_tensor", "to", "le", "gt")
        self.original = self._read()
        import storch  # noqa: PLC0415  (the import patches torch)

        self.storch = storch
        self.patched = self._read()
        self._write(self.original)

    @staticmethod
    def _read() -> tuple[Any, ...]:
        tensor = torch.Tensor
        validate = torch.distributions.Distribution._validate_args
        return torch.is_tensor, tensor.to, tensor.le, tensor.gt, validate

    @staticmethod
    def _write(values: tuple[Any, ...]) -> None:
        torch.is_tensor, torch.Tensor.to, torch.Tensor.le, torch.Tensor.gt, validate = values
        torch.distributions.Distribution._validate_args = validate

    @contextmanager
    def active(self) -> Iterator[None]:
        self._write(self.patched)
        try:
            yield
        finally:
            self._write(self.original)


class Runner:
    """One library's estimator: ``estimate(logits) -> [D * K]`` (adding its variance gradient into the
    ``.grad`` of ``parameters``, which an Adam optimiser steps while training)."""

    def __init__(self, estimate: Callable[[torch.Tensor], torch.Tensor], parameters: list[nn.Parameter]) -> None:
        self.estimate = estimate
        self.optimiser = torch.optim.Adam(parameters, lr=1e-3)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        self.optimiser.zero_grad(set_to_none=True)
        return self.estimate(logits)


class TemperedSurrogate(nn.Module):
    """pydrobert's ``c`` for RELAX: ``c(z) = surrogate(softmax(z / exp(log_temperature)))``, ``[D, K] -> []``."""

    def __init__(self, surrogate: nn.Module) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.log_temperature = nn.Parameter(torch.tensor(TEMPERATURE).log())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.surrogate((z / self.log_temperature.exp()).softmax(-1))
        return out


def ours(estimator: catlog.REBAR | catlog.RELAX, f: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    def estimate(logits: torch.Tensor) -> torch.Tensor:
        leaf = logits.detach().requires_grad_(True)
        estimator(f, leaf.clone()).backward()
        assert leaf.grad is not None
        return leaf.grad.flatten()

    return Runner(estimate, list(estimator.parameters()))


def theirs_pydrobert(control: nn.Module, f: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    def estimate(logits: torch.Tensor) -> torch.Tensor:
        leaf = logits.detach().requires_grad_(True)
        model = leaf.clone()
        z = pydrobert.to_z(model, "onehot")
        b = pydrobert.to_b(z, "onehot")
        gradient = pydrobert.relax(f(b), b, model, z, control, "onehot")
        gradient.square().sum().backward()
        model.backward(gradient.detach())
        assert leaf.grad is not None
        return leaf.grad.flatten()

    return Runner(estimate, list(control.parameters()))


def theirs_storchastic(patches: _StorchPatches, method: Any, f: Callable[[torch.Tensor], torch.Tensor]) -> Runner:
    storch = patches.storch

    def estimate(logits: torch.Tensor) -> torch.Tensor:
        leaf = logits.detach().requires_grad_(True)
        with patches.active():
            sample = method(torch.distributions.OneHotCategorical(probs=leaf.clone().softmax(-1)))
            storch.add_cost(f(sample), "cost")
            storch.backward()
        assert leaf.grad is not None
        return leaf.grad.flatten()

    return Runner(estimate, list(method.control_params))


def runners(
    patches: _StorchPatches, f: Callable[[torch.Tensor], torch.Tensor], num_variables: int, num_categories: int
) -> dict[str, Runner]:
    """Every library's REBAR and RELAX on ``f`` (see the module docstring), fresh parameters."""
    surrogate = Surrogate(num_variables, num_categories)
    storch = patches.storch
    with patches.active():
        storch_rebar = storch.method.REBAR("z", n_samples=1)
        storch_relax = storch.method.RELAX("z", n_samples=1, c_phi=copy.deepcopy(surrogate))
    rebar = pydrobert.REBARControlVariate(f, "onehot", start_temp=TEMPERATURE, start_eta=1.0, warn=False)
    return {
        "REBAR catlog": ours(catlog.REBAR(1, TEMPERATURE, one_hot=True), f),
        "REBAR catlog, validate_args=False": ours(catlog.REBAR(1, TEMPERATURE, one_hot=True, validate_args=False), f),
        "REBAR pydrobert": theirs_pydrobert(rebar, f),
        "REBAR storchastic": theirs_storchastic(patches, storch_rebar, f),
        "RELAX catlog": ours(catlog.RELAX(1, copy.deepcopy(surrogate), TEMPERATURE, one_hot=True), f),
        "RELAX catlog, validate_args=False": ours(
            catlog.RELAX(1, copy.deepcopy(surrogate), TEMPERATURE, one_hot=True, validate_args=False), f
        ),
        "RELAX pydrobert": theirs_pydrobert(TemperedSurrogate(copy.deepcopy(surrogate)), f),
        "RELAX storchastic": theirs_storchastic(patches, storch_relax, f),
    }


def measure(table: dict[str, Runner], logits: torch.Tensor, exact: torch.Tensor, repeats: int) -> list[dict[str, Any]]:
    """Variance, squared bias over its floor and CPU time of every runner, interleaved (see the module docstring)."""
    grads: dict[str, list[torch.Tensor]] = {label: [] for label in table}
    times: dict[str, list[float]] = {label: [] for label in table}
    labels = list(table)
    for round_index in range(repeats):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.process_time()
            gradient = table[label](logits)
            times[label].append(time.process_time() - start)
            grads[label].append(gradient.detach().double())
    rows = []
    for label in labels:
        stacked = torch.stack(grads[label])
        reference = f"{label.split()[0]} catlog"
        ratios = [
            sum(times[label][i : i + BLOCK]) / sum(times[reference][i : i + BLOCK]) for i in range(0, repeats, BLOCK)
        ]
        variance = catlog.gradient_variance(stacked)
        ratio = variance / catlog.gradient_variance(torch.stack(grads[reference]))
        spread = 0.0 if label == reference else math.hypot(relative_error(stacked), relative_error(grads[reference]))
        rows.append(
            {
                "estimator": label,
                "variance": variance,
                "variance / catlog's": ratio,
                "(SE)": ratio * spread,
                "squared bias / floor": catlog.squared_bias(stacked, exact) / catlog.squared_bias_floor(stacked),
                "CPU time / catlog's": statistics.median(ratios),
            }
        )
    return rows


def relative_error(gradients: torch.Tensor | list[torch.Tensor]) -> float:
    """The relative standard error of :func:`catlog.gradient_variance` of ``[R, P]`` estimates: that of
    the mean of ``|g_r - mean g|^2`` over ``r`` (the variance is heavy-tailed: few repeats dominate)."""
    stacked = torch.stack(list(gradients))
    spread = (stacked - stacked.mean(0)).square().sum(1)
    return float(spread.std() / (spread.mean() * len(spread) ** 0.5))


def train(table: dict[str, Runner], logits: torch.Tensor, steps: int, lr: float) -> None:
    """``steps`` Adam steps of every runner's parameters on its own variance gradient, interleaved."""
    for runner in table.values():
        for group in runner.optimiser.param_groups:
            group["lr"] = lr
    for _ in range(steps):
        for runner in table.values():
            runner(logits)
            runner.optimiser.step()


def problem(name: str) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The logits ``[D, K]`` (float32), ``f`` on one-hot ``[..., D, K]`` and the exact gradient ``[D * K]``."""
    num_variables, num_categories = (12, 2) if name == "binary" else map(int, name.split("x"))
    logits, target = figure1.draw(num_variables, num_categories, 0)
    distance = figure1.Distance(target.float(), "nonseparable")
    values = torch.arange(float(num_categories))
    exact = catlog.exact_gradient(figure1.Distance(target, "nonseparable"), logits).flatten()
    return logits.float(), lambda one_hot: distance(one_hot @ values), exact.double()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1000, help="estimates per variance (default: 1000)")
    parser.add_argument("--train-steps", type=int, default=100, help="Adam steps before 'trained' (default: 100)")
    parser.add_argument("--lr", type=float, default=0.005, help="their learning rate (default: 0.005)")
    parser.add_argument("--problems", nargs="+", default=["3x2", "4x3", "5x4", "6x5", "binary"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write peers_relax.json here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    patches = _StorchPatches()
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.problems:
        logits, f, exact = problem(name)
        table = runners(patches, f, *logits.shape)
        for state in ("untrained", "trained"):
            if state == "trained":
                train(table, logits, args.train_steps, args.lr)
            rows = measure(table, logits, exact, args.repeats)
            results[f"{name} {state}"] = rows
            print(f"\n## {name} ({'D = 12, K = 2' if name == 'binary' else name}), {state}\n")
            cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
            print(common.markdown_table(list(rows[0]), cells), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "peers_relax.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
