"""Issue 20's targets for IndeCateR with control variates, REBAR and RELAX: variance and cost.

Usage::

    python benchmarks/control_variates.py [--repeats 400] [--dvae-repeats 20] [--data-dir DIR] [--out DIR]

Problems (gradient w.r.t. the logits, or the DVAE encoder's weights, at fixed parameters):

- ``fig1``: figure 1's non-separable ``f = (sum_d |x_d - b_d|)^2 / D``, ``D = 6``, ``K = 10``
  (``catlog compare``'s ``fig1``);
- ``binary``: the same ``f`` on ``K = 2``, ``D = 12`` (``compare``'s ``binary``);
- ``quadratic``: a dense quadratic form in one-hot ``x``, ``f = x^T W x / 2 + u^T x`` with
  ``W`` symmetric, ``N(0, 2)`` off the diagonal blocks and zero on them, ``D = 8``, ``K = 3``
  (``compare``'s ``quadratic``, in float64);
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
``RELAX(2)`` (the experiments' default MLP surrogate, ``estimators.Surrogate``), their
parameters first trained on the problem (``Problem.fit``: Adam, ``--train-steps`` steps).
REBAR and RELAX against pydrobert-pytorch's and storchastic's: ``benchmarks/peers_relax.py``.
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

import catlog
from catlog.experiments import common, estimators
from catlog.experiments.problems import Problem, addition, binary, dvae, figure1, quadratic, variance_per_entry

BLOCK = 50
"""Estimates per call on the batched problems, the same in every call (a ``Fitted`` fit carries over)."""


def candidates(problem: Problem, remove_diagonal_up_to: int) -> dict[str, catlog.Estimator]:
    """The estimators measured on ``problem`` (see the module docstring; one-hot samples on the quadratic
    problem); ``Taylor(remove_diagonal=True)`` up to ``D = remove_diagonal_up_to`` (it costs ``D`` times the
    products)."""
    one_hot = problem.one_hot
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
        surrogate = estimators.Surrogate(problem.num_variables, problem.num_categories)
        table["RELAX(2)"] = catlog.RELAX(2, surrogate, one_hot=one_hot)
    return table


def measure(
    problem: Problem, repeats: int, train_steps: int, rounds: int, dtype: torch.dtype, remove_diagonal_up_to: int
) -> list[dict[str, Any]]:
    """Variance, bias and interleaved CPU time of every candidate on ``problem``."""
    generator = torch.Generator().manual_seed(1)
    table = candidates(problem, remove_diagonal_up_to)
    rows: dict[str, dict[str, Any]] = {}
    for label, estimator in table.items():
        problem.fit(estimator, train_steps, generator, BLOCK)
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
        "quadratic": lambda: quadratic.problem(8, 3, 0, device, torch.float64),
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
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "control_variates.json").write_text(json.dumps(results, indent=1))
    return 0


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
