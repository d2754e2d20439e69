"""SCateR's fitted control variate on ``catlog compare``'s autoregressive problem: against RLOO and the floor.

Usage::

    python benchmarks/scater_control_variate.py [--repeats 4000] [--fit-steps 100] [--dtype float64]

The problem is ``compare``'s ``autoregressive`` (a causal network over ``D = 6`` tokens of
``K = 4`` with a prefix mask, 2 contexts, gradient w.r.t. the network's weights). Rows:

- ``SCateR(2)``, and with ``Fitted()`` (memory 0.9) and ``Fitted(memory=0.99)``: the fit first
  carried over ``--fit-steps`` calls of :data:`BLOCK` estimates (``Problem.fit``), then
  measured in calls of the same size;
- ``RLOO`` at SCateR(2)'s evaluations (38) and ``RLOO(2)``;
- the floor of every correction of the completions: SCateR(2) with each coefficient
  ``c_ndk = f(x_<d, k, x^(n,k)_>d)`` replaced by its exact conditional mean
  ``Q_d(x_<d, k) = E[f(X) | X_<d = x_<d, X_d = k]`` (enumerating the ``K^D`` sequences). A
  correction ``s`` with ``E[s | x_<d, X_d = k] = 0`` (all that SCateR can subtract without
  knowing an expectation over the prefix) leaves ``E[g - s | prefixes]`` unchanged, so its
  variance is at least that of this Rao-Blackwellised estimate.

For each: the variance (:func:`catlog.gradient_variance`), its ratio to SCateR(2)'s, and the
squared bias over its noise floor (:func:`catlog.squared_bias` /
:func:`catlog.squared_bias_floor`: about 1 for an unbiased estimator). One thread.
"""

from __future__ import annotations

import argparse
import itertools

import torch

import catlog
from catlog._objective import Objective
from catlog.experiments import common
from catlog.experiments.problems import autoregressive

BLOCK = 100
"""Estimates per call (the batch of weight copies)."""


class ExactCompletions(catlog.Estimator):
    """SCateR(N) with exact completions: ``sum_d sum_k grad p(k | x^n_<d) Q_d(x^n_<d, k)``, averaged over
    ``N`` base samples; ``Q_d`` by enumerating every sequence (``K^D`` rows of ``f`` and ``D`` calls of
    ``conditional`` on them). Only for an :class:`~catlog.Autoregressive`; the value is the exact ``E[f]``."""

    def __init__(self, num_samples: int) -> None:
        super().__init__(one_hot=False, generator=None, validate_args=None, chunk_size=None)
        self.num_samples = num_samples

    def estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise ValueError("dist: expected an Autoregressive")

    def compute_cost(self, num_variables: int, num_categories: int) -> catlog.Cost:
        return catlog.Cost(samples=self.num_samples, evaluations=num_categories**num_variables)

    def estimate_autoregressive(
        self, objective: Objective, dist: catlog.Autoregressive, generator: torch.Generator | None
    ) -> torch.Tensor:
        num_variables, num_categories, batch_shape = dist.num_variables, dist.num_categories, dist.batch_shape
        base, logits = dist.draw(dist.gumbel_noise(self.num_samples, generator))  # [N, *B, D], [N, *B, D, K]
        every = torch.tensor(list(itertools.product(range(num_categories), repeat=num_variables)))  # [S, D]
        sequences = every.view(-1, *([1] * len(batch_shape)), num_variables).expand(-1, *batch_shape, -1)
        with torch.no_grad():
            probs = dist.log_prob(sequences.contiguous()).exp().flatten(1)  # [S, B'] with B' = prod(B)
            weighted = probs * objective(sequences.contiguous()).flatten(1)
        surrogate = logits.new_zeros(batch_shape)
        for d in range(num_variables):
            powers = num_categories ** torch.arange(d, -1, -1)
            code = (every[:, : d + 1] * powers).sum(-1)  # [S]: the prefix x_<=d as a number
            zeros = probs.new_zeros(num_categories ** (d + 1), probs.shape[1])
            means = torch.nan_to_num(zeros.index_add(0, code, weighted) / zeros.index_add(0, code, probs))
            prefix = (base[..., :d] * powers[1:]).sum(-1) if d else torch.zeros_like(base[..., 0])
            codes = (prefix.unsqueeze(-1) * num_categories + torch.arange(num_categories)).flatten(1, -2)
            exact = means.T.gather(1, codes.movedim(1, 0).flatten(1)).view(codes.shape[1], *codes.shape[::2])
            branch = logits[..., d, :].softmax(-1).flatten(1, -2)  # [N, B', K]
            surrogate = surrogate + (branch * exact.movedim(0, 1)).sum(-1).mean(0).view(batch_shape)
        value = weighted.sum(0).view(batch_shape)
        return value + (surrogate - surrogate.detach())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4000, help="estimates per variance (default: 4000)")
    parser.add_argument("--fit-steps", type=int, default=100, help="fitting calls before measuring (default: 100)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    problem = autoregressive.problem(args.seed, torch.device("cpu"), getattr(torch, args.dtype))
    equal = catlog.SCateR(2).cost(problem.num_variables, problem.num_categories).evaluations
    table: dict[str, catlog.Estimator] = {
        "SCateR(2)": catlog.SCateR(2),
        "SCateR(2) + Fitted()": catlog.SCateR(2, control_variate=catlog.Fitted()),
        "SCateR(2) + Fitted(memory=0.99)": catlog.SCateR(2, control_variate=catlog.Fitted(memory=0.99)),
        f"RLOO({equal})": catlog.RLOO(equal),
        "RLOO(2)": catlog.RLOO(2),
        "SCateR(2), exact completions (the floor)": ExactCompletions(2),
    }
    generator = torch.Generator().manual_seed(args.seed + 1)
    exact = problem.exact.double()
    rows, reference = [], None
    for label, estimator in table.items():
        problem.fit(estimator, args.fit_steps, generator, BLOCK)
        grads = problem.gradients(estimator, args.repeats, generator, BLOCK).double()
        variance = catlog.gradient_variance(grads)
        reference = reference or variance
        bias = catlog.squared_bias(grads, exact) / catlog.squared_bias_floor(grads)
        rows.append([label, f"{variance:.4g}", f"{variance / reference:.3f}", f"{bias:.2f}"])
        print(*rows[-1], flush=True)
    columns = ["estimator", "variance", "/ SCateR(2)", "squared bias / floor"]
    print(f"\n## {problem.title} ({args.repeats} estimates, {args.dtype})\n")
    print(common.markdown_table(columns, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
