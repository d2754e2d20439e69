"""``catlog addition``: MNIST addition of D digits (paper section 6.4, figure 4).

Each sequence of ``D`` images is labelled only with the sum of its digits; digits ``X_d`` are
sampled from the classifier's logits and trained on ``loss = -log(E[f] + 1e-8)``,
``f(x) = 1[sum_d x_d = y]``, with ``E[f]`` the estimator's value (so ``theta`` receives the
estimator's gradient divided by the estimate). Model, data and loss:
:mod:`~catlog.experiments.addition_model`; loop: :mod:`~catlog.experiments.training`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import catlog
from catlog.experiments import common, data, distributed, estimators, training
from catlog.experiments.addition_model import (
    DEFAULT_SAMPLES,
    DigitSequences,
    LeNet,
    addition_loss,
    load_mnist_sequences,
    make_estimator,
    sum_indicator,
)
from catlog.experiments.options import Command, check_at_least, config_json, option


@dataclass(frozen=True, kw_only=True)
class AdditionConfig(training.TrainingOptions, data.DataOptions):
    """Settings of ``catlog addition``."""

    digits: int = option(4, "digits per sequence, D", minimum=1, flags=("-D",))
    estimator: str = option("indecater", "gradient estimator (names below)", choices=estimators.NAMES, metavar="NAME")
    samples: int = option(DEFAULT_SAMPLES, "N (K = 10 categories per digit)", minimum=1)
    epochs: int | None = training.epochs_option(1)
    batch_size: int = option(10, "sequences per step", minimum=1)
    early_logs: int = option(8, "log-spaced evaluations within the first epoch", minimum=0)
    train_limit: int | None = option(None, "use only the first N MNIST train images", minimum=1, default_text="all")
    test_limit: int | None = option(None, "use only the first N MNIST test images", minimum=1, default_text="all")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least("--samples", self.samples, estimators.parse(self.estimator)[0].min_size)


def batch_loss(
    model: nn.Module,
    estimator: catlog.Estimator,
    images: torch.Tensor,
    sums: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_b -log(estimate_b + 1e-8)`` (with autograd) and the estimates ``[B]`` of ``E[f]`` of the
    sequences ``images: [B, D, 28, 28]`` (classified once each) labelled ``sums: [B]``."""
    estimate: torch.Tensor = estimator(sum_indicator(sums), model(images), generator=generator)
    return addition_loss(estimate), estimate


def estimate_statistics(estimates: torch.Tensor) -> dict[str, float]:
    """``train_loss`` (mean ``-log(estimate + 1e-8)``), ``train_estimate`` (mean) and ``train_zero_estimates``
    (the fraction exactly 0: no sample, nor perturbed row, hit the sum; the gradient is zero) of the
    estimates ``[G]`` of ``E[f]``."""
    return {
        "train_loss": float(addition_loss(estimates)),
        "train_estimate": float(estimates.mean()),
        "train_zero_estimates": float((estimates == 0).double().mean()),
    }


@torch.no_grad()
def evaluate(model: nn.Module, test: DigitSequences, chunk: int = 2000) -> dict[str, float]:
    """``test_sum_accuracy`` (the argmax digits add up to the label) and ``test_digit_accuracy`` from one
    classifier pass over the test images."""
    model.eval()
    predicted = torch.cat([model(part).argmax(dim=-1) for part in torch.split(test.images, chunk)])
    model.train()
    return {
        "test_sum_accuracy": float((predicted[test.index].sum(dim=-1) == test.sums).double().mean()),
        "test_digit_accuracy": float((predicted == test.labels).double().mean()),
    }


def log_iterations(steps_per_epoch: int, points: int) -> set[int]:
    """About ``points`` log-spaced iterations in ``[1, steps_per_epoch)`` for the early log."""
    if points < 1 or steps_per_epoch < 2:
        return set()
    ratio = (steps_per_epoch - 1) ** (1.0 / points)
    return {round(ratio**i) for i in range(points)} - {0}


class AdditionTask:
    """MNIST addition as a :class:`~catlog.experiments.training.Task`: the loss of a batch of
    sequences and its :func:`estimate_statistics`; log rows at about ``--early-logs`` log-spaced
    iterations of the first epoch and at the end of every epoch, with the test accuracies."""

    def __init__(self, config: AdditionConfig, train_data: DigitSequences, test_data: DigitSequences) -> None:
        self.config = config
        self.train_data, self.test_data = train_data, test_data
        self.model = LeNet()
        self.estimator = make_estimator(config.estimator, config.digits, config.samples)
        self.num_examples, self.batch_size = len(train_data), config.batch_size

    def loss(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """``mean_b -log(estimate_b + 1e-8)`` over the sequences ``indices``."""
        loss, estimate = batch_loss(self.model, self.estimator, *self.train_data.batch(indices), generator)
        return loss, estimate_statistics(estimate.detach())

    def start_epoch(self, epoch: int) -> None:
        """Nothing changes between epochs."""

    def log_due(self, iteration: int, steps_per_epoch: int) -> bool:
        """At the :func:`log_iterations` of the first epoch and at the end of every epoch."""
        return (
            0 < iteration
            and iteration % steps_per_epoch == 0
            or iteration in log_iterations(steps_per_epoch, self.config.early_logs)
        )

    def evaluate(self, iteration: int, final: bool, generator: torch.Generator) -> dict[str, Any]:
        """The test accuracies (:func:`evaluate`)."""
        return evaluate(self.model, self.test_data)


def summarise(trainer: training.Trainer, state: training.TrainState) -> dict[str, Any]:
    """Write ``log.json`` (the config and the log rows); the summary is the config and the last row (printed)."""
    summary = {**config_json(trainer.config), **state.log[-1]}
    common.write_json(trainer.out / "log.json", {"config": config_json(trainer.config), "history": list(state.log)})
    print(json.dumps({"out": str(trainer.out), **state.log[-1]}, indent=2))
    return summary


def run(config: AdditionConfig) -> int:
    """The ``catlog addition`` command (also under ``torchrun``: see docs/scaling.md)."""
    data.check_dataset("mnist", config.data_dir)

    def make_task(ctx: distributed.DistributedContext, out: Path) -> AdditionTask:
        train_data, test_data = load_mnist_sequences(
            config.digits, config.seed, config.data_dir, config.train_limit, config.test_limit
        )
        dtype, device = config.torch_dtype, ctx.device
        return AdditionTask(config, train_data.to(device, dtype), test_data.to(device, dtype))

    return training.run(config, f"addition-d{config.digits}-{config.estimator}", make_task, summarise)


COMMAND = Command(
    "addition",
    help="MNIST addition of D digits (paper figure 4)",
    description=__doc__ or "",
    config=AdditionConfig,
    run=run,
)
