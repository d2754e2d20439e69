"""``catlog addition-variance``: estimator variance on MNIST addition at the untrained classifier.

For every ``D`` and estimator, ``R`` independent estimates at the fixed logits ``[B, D, 10]`` of
the first ``B`` test sequences (:mod:`catlog.experiments.problems.addition`). Per row:
``grad_variance``, ``mean_i Var_r g_ri`` of the gradient of ``sum_b E[f]`` w.r.t. the logits
(:func:`~catlog.experiments.problems.variance_per_entry`), and its ``grad_snr``
(:func:`catlog.signal_to_noise`); ``loss_grad_variance``, the same for the training loss
``mean_b -log(value_b + 1e-8)``; ``zero_estimates``, the fraction of values exactly 0 (the loss
is then ``-log 1e-8``; IndeCateR's and RLOO's gradient is zero there too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import catlog
from catlog.experiments import common, data, estimators, run_folder
from catlog.experiments.addition_model import DEFAULT_SAMPLES, ESTIMATORS, NUM_CLASSES, make_estimator
from catlog.experiments.options import Command, RunOptions, option
from catlog.experiments.problems import addition, variance_per_entry


def variance_row(
    name: str, digits: int, estimator: Any, values: torch.Tensor, grads: torch.Tensor, loss_grads: torch.Tensor
) -> dict[str, Any]:
    """One table row (its keys are the columns) from the outputs of
    :func:`catlog.experiments.problems.addition.estimates_and_gradients`."""
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
class VarianceConfig(RunOptions, data.DataOptions):
    """Settings of ``catlog addition-variance``."""

    digits: tuple[int, ...] = option((4, 8, 12, 16), "values of D", minimum=1, flags=("-D",))
    estimators: tuple[str, ...] = option(
        ESTIMATORS[:4], "estimators to measure (names below)", choices=estimators.NAMES, metavar="NAME"
    )
    samples: int = option(DEFAULT_SAMPLES, "N, as for `catlog addition`", minimum=1)
    repeats: int = option(200, "independent estimates R", minimum=2)
    block: int = option(20, "repeats per estimator call", minimum=1)
    batch_size: int = option(10, "test sequences B", minimum=1)


def run(config: VarianceConfig) -> int:
    """The ``catlog addition-variance`` command: writes ``variance.csv`` and ``variance.md``."""
    device, dtype = torch.device(config.device), config.torch_dtype
    data.check_dataset("mnist", config.data_dir)
    with run_folder.open_command_run(config, "addition-variance") as run:
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
        common.write_csv(run.path / "variance.csv", rows)
        table = common.markdown_table(tuple(rows[0]), [list(row.values()) for row in rows])
        common.write_text(run.path / "variance.md", table)
    print(table, end="")
    return 0


COMMAND = Command(
    "addition-variance",
    help="estimator variance and zero estimates on MNIST addition at the untrained classifier",
    description=__doc__ or "",
    config=VarianceConfig,
    run=run,
)
