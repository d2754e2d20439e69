"""Issue 20's targets for IndeCateR with control variates, REBAR and RELAX: variance and cost.

Usage::

    python benchmarks/control_variates.py [--repeats 400] [--dvae-repeats 20] [--data-dir DIR] [--out DIR]

Problems (gradient w.r.t. the logits, or the DVAE encoder's weights, at fixed parameters):

- ``fig1``: figure 1's non-separable ``f = (sum_d |x_d - b_d|)^2 / D``, ``D = 6``, ``K = 10``
  (``catlog compare``'s ``fig1``);
- ``binary``: the same ``f`` on ``K = 2``, ``D = 12`` (``compare``'s ``binary``);
- ``quadratic``: a dense quadratic form in one-hot ``x``, ``f = x^T W x / 2 + u^T x`` with
  ``W`` symmetric, ``N(0, 1)`` off the diagonal blocks and zero on them, ``D = 8``, ``K = 3``;
- ``addition``: MNIST addition of 4 digits, ``f = [sum_d x_d = y]``, 10 test sequences at
  the untrained LeNet, gradient w.r.t. its logits (``compare``'s ``addition``; no relaxation:
  Taylor, REBAR and RELAX do not apply);
- ``dvae``: figure 3's discrete VAE (``D = 200``, ``K = 2``) after 300 RLOO(2) Adam steps
  on MNIST, encoder gradient of the negative ELBO on the first 10 validation images
  (``compare``'s ``dvae``).

Estimators: plain ``IndeCateR(2)``; IndeCateR(2) with each ``Taylor`` control variate and
with ``Fitted()`` (memory 0.9) and ``Fitted(memory=0.99)``, their fit first carried over
``--train-steps`` calls of 50 estimates at the same parameters (20 on the DVAE);
``RLOO(2)`` and RLOO at IndeCateR(2)'s evaluations (402 on the DVAE); ``REBAR(2)`` and
``RELAX(2)`` (a 784-free MLP surrogate), their parameters first trained on the problem
(Adam, ``--train-steps`` estimates); and pydrobert-pytorch's REBAR at one sample, where installed.
The autoregressive problem is not here: SCateR refuses a control variate on an ``Autoregressive``.

Every problem is a :class:`catlog.experiments.problems.Problem`. For each estimator: the
variance (``variance_per_entry``: the mean over coordinates of the variance across ``R``
estimates), its ratio to plain IndeCateR's, the largest bias over its standard error
across coordinates (``max_i |mean_i - exact_i| / (SE_i + rounding)``; for an unbiased
estimator below about 3.5 for ``P <= 60`` coordinates; ``rounding`` is ``100 eps
max|exact|`` in the problem's dtype, for the estimators that are exact) where the exact
gradient is known, and the process CPU time per estimate relative to plain IndeCateR's,
measured interleaved in one loop (median of per-round ratios), one thread.
It prints Markdown tables and writes ``control_variates.json`` into ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import catlog
from catlog.experiments import common
from catlog.experiments.problems import Problem, addition, binary, dvae, figure1, logits_problem, variance_per_entry

BLOCK = 50
"""Estimates per call on the batched problems, the same in every call (a ``Fitted`` fit carries over)."""


def quadratic_problem(num_variables: int = 8, num_categories: int = 3) -> Problem:
    """The dense quadratic problem (``f`` takes one-hot ``x``), exact gradient by enumeration."""
    generator = torch.Generator().manual_seed(0)
    flat = torch.randn(num_variables * num_categories, num_variables * num_categories, generator=generator)
    # symmetric, zero on the diagonal blocks (Bilinear drops them)
    shape = (num_variables, num_categories, num_variables, num_categories)
    weights = catlog.Bilinear((flat + flat.T).double().view(shape)).weights
    linear, logits = torch.randn(2, num_variables, num_categories, generator=generator, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        y = x.flatten(-2)
        return (y @ weights.flatten(0, 1).flatten(1) * y).sum(-1) / 4 + (x * linear).sum((-2, -1))

    exact = catlog.exact_gradient(f, logits, one_hot=True)
    return logits_problem("quadratic", "x^T W x / 2 + u^T x, one-hot x", logits, f, relaxable=True, exact=exact)


class Surrogate(nn.Module):
    """RELAX's surrogate: an MLP on the flattened relaxed one-hot ``[M, *B, D, K] -> [M, *B]``."""

    def __init__(self, num_variables: int, num_categories: int, dtype: torch.dtype) -> None:
        super().__init__()
        inputs = num_variables * num_categories
        self.net = nn.Sequential(nn.Flatten(-2), nn.Linear(inputs, 64), nn.Tanh(), nn.Linear(64, 1)).to(dtype)

    def forward(self, relaxed: torch.Tensor) -> torch.Tensor:
        return self.net(relaxed).squeeze(-1)


def candidates(problem: Problem, dtype: torch.dtype, remove_diagonal_up_to: int) -> dict[str, catlog.Estimator]:
    """The estimators measured on ``problem`` (see the module docstring; one-hot samples on the quadratic
    problem); ``Taylor(remove_diagonal=True)`` up to ``D = remove_diagonal_up_to`` (it costs ``D`` times the
    products)."""
    one_hot = problem.name == "quadratic"
    equal = catlog.IndeCateR(2).cost(problem.num_variables, problem.num_categories).evaluations
    points: list[tuple[str, catlog.Taylor]] = [
        ("others", catlog.Taylor("others")),
        ("mean", catlog.Taylor("mean")),
        ("2 draws", catlog.Taylor(2)),
        ("4 draws", catlog.Taylor(4)),
        ("4 draws at the vertices", catlog.Taylor(4, shrink=0.0)),
    ]
    if problem.num_variables <= remove_diagonal_up_to:
        points += [
            ("others, no diagonal", catlog.Taylor("others", remove_diagonal=True)),
            ("mean, no diagonal", catlog.Taylor("mean", remove_diagonal=True)),
        ]
    table: dict[str, catlog.Estimator] = {"IndeCateR(2)": catlog.IndeCateR(2, one_hot=one_hot)}
    for label, taylor in points if problem.relaxable else []:
        table[f"IndeCateR(2) + Taylor({label})"] = catlog.IndeCateR(2, control_variate=taylor, one_hot=one_hot)
    for fitted in (catlog.Fitted(), catlog.Fitted(memory=0.99)):
        table[f"IndeCateR(2) + {fitted!r}"] = catlog.IndeCateR(2, control_variate=fitted, one_hot=one_hot)
    table["RLOO(2)"] = catlog.RLOO(2, one_hot=one_hot)
    table[f"RLOO({equal})"] = catlog.RLOO(equal, one_hot=one_hot)
    if problem.relaxable:
        table["REBAR(2)"] = catlog.REBAR(2, one_hot=one_hot)
        surrogate = Surrogate(problem.num_variables, problem.num_categories, dtype)
        table["RELAX(2)"] = catlog.RELAX(2, surrogate, one_hot=one_hot)
    return table


def train(estimator: catlog.Estimator, problem: Problem, steps: int, generator: torch.Generator) -> None:
    """Fit a learned control variate: ``steps`` Adam steps on its own variance gradient; or fill
    a carried ``Fitted`` fit with ``steps`` calls of ``block`` estimates (the measured calls
    have the same shape, so they carry it on)."""
    if isinstance(estimator, catlog.IndeCateR) and isinstance(estimator.control_variate, catlog.Fitted):
        for _ in range(steps if estimator.control_variate.memory > 0 else 0):
            problem.gradients(estimator, BLOCK, generator, BLOCK)
        return
    if not isinstance(estimator, (catlog.REBAR, catlog.RELAX)) or steps == 0:
        return
    optimiser = torch.optim.Adam(estimator.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        problem.gradients(estimator, 1 if problem.name == "dvae" else 10, generator, BLOCK)
        optimiser.step()


def measure(
    problem: Problem, repeats: int, train_steps: int, rounds: int, dtype: torch.dtype, remove_diagonal_up_to: int
) -> list[dict[str, Any]]:
    """Variance, bias and interleaved CPU time of every candidate on ``problem``."""
    generator = torch.Generator().manual_seed(1)
    table = candidates(problem, dtype, remove_diagonal_up_to)
    rows: dict[str, dict[str, Any]] = {}
    for label, estimator in table.items():
        train(estimator, problem, train_steps, generator)
        grads = problem.gradients(estimator, repeats, generator, BLOCK).double()
        row: dict[str, Any] = {"estimator": label, "variance": variance_per_entry(grads)}
        if problem.exact is not None:
            exact = problem.exact.double()
            rounding = 100 * torch.finfo(dtype).eps * float(exact.abs().max())
            standard_error = grads.std(0) / repeats**0.5 + rounding
            row["max |bias| / SE"] = float(((grads.mean(0) - exact).abs() / standard_error).max())
        rows[label] = row
    times: dict[str, list[float]] = {label: [] for label in table}
    for _ in range(rounds):
        for label, estimator in table.items():
            start = time.process_time()
            problem.gradients(estimator, 1, generator)
            times[label].append(time.process_time() - start)
    base_variance = rows["IndeCateR(2)"]["variance"]
    for label, row in rows.items():
        row["variance / IndeCateR(2)"] = row["variance"] / base_variance if base_variance > 0 else float("nan")
        ratios = [t / b for t, b in zip(times[label], times["IndeCateR(2)"], strict=True)]
        row["CPU time / IndeCateR(2)"] = statistics.median(ratios)
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=400, help="estimates per variance (default: 400)")
    parser.add_argument("--dvae-repeats", type=int, default=20, help="estimates per variance on the DVAE")
    parser.add_argument("--train-steps", type=int, default=100, help="REBAR/RELAX fitting steps (default: 100)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default: 5)")
    parser.add_argument("--problems", nargs="+", default=["fig1", "binary", "quadratic", "addition", "dvae"])
    parser.add_argument(
        "--remove-diagonal-up-to", type=int, default=12, help="measure remove_diagonal=True up to this D (default: 12)"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device, dtype = torch.device("cpu"), torch.float32
    builders: dict[str, Callable[[], Problem]] = {
        "fig1": lambda: figure1.problem(6, 10, "nonseparable", 0, device, dtype),
        "binary": lambda: binary.hamming(12, 0, device, dtype),
        "quadratic": quadratic_problem,
        "addition": lambda: addition.problem(4, 10, args.data_dir, 0, device, dtype),
        "dvae": lambda: dvae.mnist(None, 300, 10, args.data_dir, 0, device, dtype),
    }
    results: dict[str, list[dict[str, Any]]] = {}
    for name in args.problems:
        problem = builders[name]()
        repeats = args.dvae_repeats if name == "dvae" else args.repeats
        steps = min(args.train_steps, 20) if name == "dvae" else args.train_steps
        wide = torch.float64 if name == "quadratic" else dtype
        results[name] = measure(problem, repeats, steps, args.rounds, wide, args.remove_diagonal_up_to)
        columns = list(results[name][0])
        for row in results[name]:
            columns += [key for key in row if key not in columns]
        cells = [[_format(row.get(column, "")) for column in columns] for row in results[name]]
        print(f"\n## {name} (D = {problem.num_variables}, K = {problem.num_categories})\n")
        print(common.markdown_table(columns, cells), flush=True)
    peer = peer_comparison(args.repeats)
    if peer:
        print("\n## REBAR against pydrobert-pytorch (binary problem, one sample)\n")
        print(common.markdown_table(list(peer[0]), [[_format(v) for v in row.values()] for row in peer]))
        results["pydrobert"] = peer
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "control_variates.json").write_text(json.dumps(results, indent=1))
    return 0


def peer_comparison(repeats: int) -> list[dict[str, Any]]:
    """Our REBAR(1) and pydrobert-pytorch's on the binary problem (one-hot ``f``), untrained
    (the same initial temperature 0.5 and scale 1): variance, and CPU time per estimate
    (estimate, its gradient and the variance gradient of the control variate's parameters)
    relative to pydrobert's, measured interleaved; empty where pydrobert is not installed."""
    try:
        from pydrobert.torch import estimators as peer
    except ImportError:
        return []
    logits, target = figure1.draw(12, 2, 0)
    distance = figure1.Distance(target.float(), "nonseparable")

    def f(one_hot: torch.Tensor) -> torch.Tensor:
        return distance(one_hot @ torch.arange(2.0))

    control = peer.REBARControlVariate(f, "onehot", start_temp=0.5, warn=False)

    def peer_estimate(logits: torch.Tensor) -> torch.Tensor:
        z = peer.to_z(logits, "onehot")
        b = peer.to_b(z, "onehot")
        grad = peer.relax(f(b), b, logits, z, control, "onehot")
        (grad**2).sum().backward()
        return grad

    def ours(validate: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        estimator = catlog.REBAR(1, one_hot=True, validate_args=validate)
        return lambda logits: torch.autograd.grad(estimator(f, logits), logits)[0]

    runs = {
        "catlog.REBAR(1)": ours(True),
        "catlog.REBAR(1, validate_args=False)": ours(False),
        "pydrobert REBAR": peer_estimate,
    }
    grads: dict[str, list[torch.Tensor]] = {label: [] for label in runs}
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            start = time.process_time()
            grads[label].append(run(logits.float().requires_grad_(True)).detach().flatten())
            times[label].append(time.process_time() - start)
    reference = times["pydrobert REBAR"]
    return [
        {
            "estimator": label,
            "variance": variance_per_entry(torch.stack(grads[label])),
            "CPU time / pydrobert": statistics.median(t / r for t, r in zip(times[label], reference, strict=True)),
        }
        for label in runs
    ]


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
