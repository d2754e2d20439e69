"""Estimator variance on the MNIST-addition task at fixed parameters (``catlog addition-variance``).

For every ``D`` and estimator, the untrained classifier (seeded) gives logits
``[B, D, 10]`` of the first ``B`` test sequences; ``R`` independent estimates are
taken at these fixed logits. Reported per row:

- ``grad_variance``: ``mean_i Var_r(g_r[i])`` of the estimator's gradient ``g`` of
  ``sum_b E[f]`` with respect to the logits (:func:`catlog.gradient_variance` over the
  number of entries, :func:`~catlog.experiments.problems.variance_per_entry`), and
  ``grad_snr = |mean_r g_r|^2 / sum_i Var_r(g_r[i])`` (:func:`catlog.signal_to_noise`);
- ``loss_grad_variance``: the same variance for the gradient of the training loss
  ``mean_b -log(value_b + 1e-8)``;
- ``zero_estimates``: fraction of the values ``value_b`` that are exactly 0 (the loss
  is then ``-log 1e-8``; with IndeCateR's Rao-Blackwellised value, and with RLOO, the
  gradient is zero there too).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import catlog
from catlog.experiments import common, data, estimators, run_folder
from catlog.experiments.addition_model import DEFAULT_SAMPLES, ESTIMATORS, NUM_CLASSES, make_estimator
from catlog.experiments.problems import addition, variance_per_entry

ROW_FIELDS = (
    "digits",
    "estimator",
    "samples",
    "evaluations",
    "grad_variance",
    "grad_snr",
    "loss_grad_variance",
    "zero_estimates",
)


def variance_row(
    name: str, digits: int, estimator: Any, values: torch.Tensor, grads: torch.Tensor, loss_grads: torch.Tensor
) -> dict[str, Any]:
    """One table row from the outputs of :func:`catlog.experiments.problems.addition.estimates_and_gradients`."""
    cost = estimator.cost(digits, NUM_CLASSES)
    return {
        "digits": digits,
        "estimator": name,
        "samples": cost.samples,
        "evaluations": cost.evaluations,
        "grad_variance": f"{variance_per_entry(grads):.3g}",
        "grad_snr": f"{catlog.signal_to_noise(grads):.3g}",
        "loss_grad_variance": f"{variance_per_entry(loss_grads):.3g}",
        "zero_estimates": round(float((values == 0).double().mean()), 3),
    }


@dataclass(frozen=True, kw_only=True)
class VarianceConfig(common.RunOptions):
    """Settings of ``catlog addition-variance`` (see :func:`add_options` for their meaning)."""

    digits: tuple[int, ...] = (4, 8, 12, 16)
    estimators: tuple[str, ...] = ESTIMATORS[:4]
    samples: int = DEFAULT_SAMPLES
    repeats: int = 200
    block: int = 20
    batch_size: int = 10
    data_dir: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        common.check_at_least("--repeats", self.repeats, 2)
        for option in ("block", "batch_size", "samples"):
            common.check_at_least("--" + option.replace("_", "-"), getattr(self, option), 1)
        for digits in self.digits:
            common.check_at_least("--digits", digits, 1)


def run(config: VarianceConfig) -> int:
    """The ``catlog addition-variance`` command: writes ``variance.csv`` and ``variance.md``."""
    common.apply_threads(config.threads)
    device, dtype = torch.device(config.device), config.torch_dtype
    data.check_dataset("mnist", config.data_dir)
    folder = common.default_out(config.out, "addition-variance")
    with run_folder.open_run(folder, common.config_json(config), overwrite=config.overwrite) as run:
        rows = []
        for digits in config.digits:
            logits, sums = addition.untrained_logits(
                digits, config.batch_size, config.data_dir, config.seed, device, dtype
            )
            for name in config.estimators:
                estimator = make_estimator(name, digits, config.samples)
                generator = torch.Generator(device=device).manual_seed(config.seed)
                outputs = addition.estimates_and_gradients(
                    estimator, logits, sums, config.repeats, config.block, generator
                )
                rows.append(variance_row(name, digits, estimator, *outputs))
        common.write_csv(run.path / "variance.csv", rows, ROW_FIELDS)
        table = common.markdown_table(ROW_FIELDS, [[row[field] for field in ROW_FIELDS] for row in rows])
        common.write_text(run.path / "variance.md", table)
    print(table, end="")
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog addition-variance``."""
    parser.add_argument("--digits", "-D", type=int, nargs="+", default=[4, 8, 12, 16], help="values of D")
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=estimators.NAMES,
        default=list(ESTIMATORS[:4]),
        metavar="NAME",
        help="estimators to measure (names below)",
    )
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="N, as for `catlog addition`")
    parser.add_argument("--repeats", type=int, default=200, help="independent estimates R")
    parser.add_argument("--block", type=int, default=20, help="repeats per estimator call")
    parser.add_argument("--batch-size", type=int, default=10, help="test sequences B")
    data.add_data_options(parser, cache=False)


def build_config(args: argparse.Namespace) -> VarianceConfig:
    """The config of the parsed ``catlog addition-variance`` options."""
    return common.config_from_args(VarianceConfig, args)


COMMANDS = (
    common.Command(
        "addition-variance",
        help="estimator variance and zero estimates on MNIST addition at the untrained classifier",
        description=__doc__,
        add_options=add_options,
        config=build_config,
        run=run,
    ),
)
