"""MNIST addition of D digits (paper section 6.4, figure 4).

A sequence of ``D`` MNIST images is labelled only with the sum of its digits.
A classifier maps every image to logits over the digits ``0..9``; the digits
``X_d`` are sampled from them, and the only supervision is whether the sampled
digits add up to the label:

    f(x) = 1[sum_d x_d = y],        loss = -log(E_{X ~ p_theta}[f(X)] + 1e-8),

with ``E[f]`` replaced by the value a ``catlog`` estimator returns, so that
``theta`` receives the estimator's gradient of ``E[f]`` divided by the estimate.

Subcommands: ``catlog addition`` trains one run (log, checkpoints, ``--resume``);
``catlog addition-plot RUN_DIR...`` draws figure 4 from finished runs
(:mod:`catlog.experiments.addition_plot`); ``catlog addition-variance`` measures the
estimators' variance at fixed parameters (:mod:`catlog.experiments.addition_variance`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import catlog
from catlog.experiments import common, data, distributed, estimators, run_folder
from catlog.experiments.keras import KerasAdam, glorot_uniform_

NUM_CLASSES = 10
LOSS_EPSILON = 1e-8
ESTIMATORS: tuple[str, ...] = ("indecater", "indecater-pv", "rloo-s", "rloo-f", "reinforce-s")
DEFAULT_SAMPLES = 10
# Settings a resumed run may change; any other difference from the saved config is refused.
MAY_CHANGE: tuple[str, ...] = ("epochs", "early_logs", "device", "threads", "out", "resume", "overwrite", "data_dir")


@dataclass(frozen=True, kw_only=True)
class AdditionConfig(common.RunOptions):
    """Settings of ``catlog addition`` (see :func:`add_options` for their meaning)."""

    digits: int = 4
    estimator: str = "indecater"
    samples: int = DEFAULT_SAMPLES
    epochs: int = 1
    batch_size: int = 10
    lr: float = 1e-3
    early_logs: int = 8
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for option in ("digits", "samples", "epochs", "batch_size"):
            common.check_at_least("--" + option.replace("_", "-"), getattr(self, option), 1)
        if self.estimator.startswith("rloo"):
            common.check_at_least("--samples", self.samples, 2)
        common.check_at_least("--early-logs", self.early_logs, 0)
        for option in ("train_limit", "test_limit"):
            if getattr(self, option) is not None:
                common.check_at_least("--" + option.replace("_", "-"), getattr(self, option), 1)
        if self.resume and self.out is None:
            raise common.OptionError("--resume", "expected --out naming the run folder to resume, got none")


@dataclass(frozen=True)
class DigitSequences:
    """Sequences of ``D`` digit images, stored as indices into one image tensor.

    Attributes:
        images: ``[N, 28, 28]`` float images in ``[0, 1]``.
        labels: ``[N]`` int64 digit labels (for the digit accuracy; never trained on).
        index: ``[G, D]`` int64, row ``g`` lists the images of sequence ``g``.
        sums: ``[G]`` int64, ``sums[g] = sum_d labels[index[g, d]]``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    sums: torch.Tensor

    def __len__(self) -> int:
        return self.index.shape[0]

    def batch(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, D, 28, 28]`` and sums ``[B]`` of the sequences ``groups: LongTensor[B]``."""
        return self.images[self.index[groups]], self.sums[groups]

    def to(self, device: torch.device, dtype: torch.dtype) -> DigitSequences:
        """The same sequences with images of ``dtype``, every tensor on ``device``."""
        return DigitSequences(
            self.images.to(device, dtype), self.labels.to(device), self.index.to(device), self.sums.to(device)
        )


def digit_sequences(
    images: torch.Tensor, labels: torch.Tensor, digits: int, generator: torch.Generator | None = None
) -> DigitSequences:
    """Shuffle the images and cut them into sequences of ``digits`` images labelled by their sum.

    Every image is used. When ``N`` is not a multiple of ``D``, the last
    sequence is completed with the first ``D - N mod D`` images of the same
    shuffled order, so that all sequences have ``D`` digits and those few
    images appear in two sequences (e.g. 8 of the 10000 test images for D = 12).

    Args:
        images: ``[N, 28, 28]`` float images.
        labels: ``[N]`` int64 digit labels.
        digits: ``D >= 1``, the sequence length.
        generator: the random source of the shuffle.

    Returns:
        :class:`DigitSequences` with ``ceil(N / D)`` sequences.
    """
    if digits < 1:
        raise ValueError(f"digits: expected a positive integer, got {digits}")
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images, labels: expected shapes [N, H, W] and [N], got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    count = labels.shape[0]
    if count == 0:
        raise ValueError("images: expected at least one image, got none")
    order = torch.randperm(count, generator=generator)
    padding = -count % digits
    order = torch.cat([order, order[:padding].repeat(padding // count + 1)[:padding]])
    index = order.view(-1, digits)
    return DigitSequences(images, labels, index, labels[index].sum(dim=-1))


class LeNet(nn.Module):
    """The protocol's digit classifier: two conv/ReLU/max-pool stages and three dense layers.

    ``[*B, 28, 28] -> [*B, 10]``: conv 6@5x5, ReLU, max-pool 2, conv 16@5x5, ReLU,
    max-pool 2, dense 256 -> 120, ReLU, 120 -> 84, ReLU, 84 -> 10 (logits). Layers start as
    Keras' (Glorot-uniform kernels, zero biases: :func:`~catlog.experiments.keras.glorot_uniform_`).

    Written for speed on CPU: each ReLU runs after its max-pool (the same function,
    ``relu(max(a)) = max(relu(a))``, on a quarter of the values), and the convolution
    weights are stored ``channels_last``, which oneDNN runs faster (measured in
    ``docs/performance.md``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(6, 16, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, NUM_CLASSES),
        )
        glorot_uniform_(self)
        self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[*B, 10]`` of images ``[*B, 28, 28]``, one classifier pass per image."""
        batch = images.shape[:-2]
        return self.layers(images.reshape(-1, 1, *images.shape[-2:])).view(*batch, NUM_CLASSES)


def sum_indicator(sums: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x) = 1[sum_d x_d = y]`` for the labels ``sums = y: LongTensor[B]``.

    The returned ``f`` maps digits ``x: [M, B, D]`` (any integer or float dtype
    holding whole digits) to a bool ``[M, B]``, broadcasting ``y`` over ``M``.
    """

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1) == sums

    return f


def addition_loss(estimate: torch.Tensor) -> torch.Tensor:
    """``mean_b -log(estimate_b + 1e-8)`` of estimates ``[B]`` of ``E[f]``; a scalar."""
    return -torch.log(estimate + LOSS_EPSILON).mean()


def make_estimator(name: str, digits: int, samples: int = DEFAULT_SAMPLES) -> catlog.Estimator:
    """The estimator ``name`` of the vocabulary (:mod:`catlog.experiments.estimators`) for ``digits`` digits.

    ``N = samples``; ``K = 10``: ``rloo-f`` takes ``D * 10 * N`` samples, the function
    evaluations of IndeCateR with ``N``; ``indecater-pv`` draws ``N`` per variable.
    """
    if samples < 1:
        raise ValueError(f"samples: expected a positive integer, got {samples}")
    return estimators.make(name, estimators.Budget(samples, digits, NUM_CLASSES))


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    estimator: Any,
    images: torch.Tensor,
    sums: torch.Tensor,
    generator: torch.Generator | None = None,
    weight: float = 1.0,
) -> torch.Tensor:
    """One optimiser step on ``weight * mean_b -log(estimate_b + 1e-8)``; returns the detached estimates ``[B]``.

    Args:
        images: ``[B, D, 28, 28]``, classified once each: logits ``[B, D, 10]``.
        sums: ``[B]`` labels.
        weight: this rank's :attr:`catlog.experiments.distributed.Batch.weight` (1 single-process).
    """
    optimizer.zero_grad(set_to_none=True)
    estimate = estimator(sum_indicator(sums), model(images), generator=generator)
    (addition_loss(estimate) * weight).backward()
    optimizer.step()
    return estimate.detach()


def estimate_statistics(estimates: torch.Tensor) -> dict[str, float]:
    """Training statistics of the estimates ``[G]`` of ``E[f]`` of ``G`` sequences.

    ``train_loss``: mean of ``-log(estimate + 1e-8)``; ``train_estimate``: mean
    estimate; ``train_zero_estimates``: fraction of estimates exactly 0 (the loss is then
    ``-log 1e-8``; for RLOO/REINFORCE no sample hit the sum and the gradient is zero; for
    IndeCateR no sample nor perturbed row hit it, and its gradient is zero too).
    """
    return {
        "train_loss": float(addition_loss(estimates)),
        "train_estimate": float(estimates.mean()),
        "train_zero_estimates": float((estimates == 0).double().mean()),
    }


@torch.no_grad()
def evaluate(model: nn.Module, test: DigitSequences, chunk: int = 2000) -> dict[str, float]:
    """Test accuracies from one classifier pass over every test image.

    Returns ``test_sum_accuracy`` (sum of the argmax digits equals the label, over
    the test sequences) and ``test_digit_accuracy`` (argmax equals the digit, over the images).
    """
    model.eval()
    predicted = torch.cat([model(part).argmax(dim=-1) for part in test.images.split(chunk)])
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


def train(
    config: AdditionConfig,
    train_data: DigitSequences,
    test_data: DigitSequences,
    out: Path,
    ctx: distributed.DistributedContext | None = None,
) -> list[dict[str, Any]]:
    """Train the classifier on the sums; writes ``log.csv``, ``log.json`` and ``checkpoint.pt`` into ``out``.

    A log row is written at about ``config.early_logs`` log-spaced iterations of the
    first epoch and at the end of every epoch; a checkpoint after every epoch.
    With ``config.resume`` the run continues from ``out/checkpoint.pt`` up to ``config.epochs``
    (:func:`open_run` has checked that the checkpoint is there and the config the same).

    Returns:
        The log rows: ``epoch`` (fractional), ``iteration``, ``test_sum_accuracy``,
        ``test_digit_accuracy``, the :func:`estimate_statistics` of the sequences
        trained on since the previous row, ``train_wall_s`` and ``train_cpu_s`` (cumulative, training
        steps only, evaluation excluded).
    """
    ctx = distributed.DistributedContext(device=torch.device(config.device)) if ctx is None else ctx
    device = ctx.device
    torch.manual_seed(config.seed)
    model = LeNet().to(device, train_data.images.dtype)
    optimizer = KerasAdam(model.parameters(), lr=config.lr)
    estimator = make_estimator(config.estimator, config.digits, config.samples)
    clock, history, epoch = common.Clock(device), [], 0
    checkpoint_path = out / run_folder.CHECKPOINT
    if config.resume:
        state = run_folder.load_checkpoint(checkpoint_path, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        clock.wall_s, clock.cpu_s = state["clock"]
        history, epoch = state["history"], state["epoch"]
    net = distributed.wrap_model(model, ctx)

    size, batch, seed = len(train_data), config.batch_size, config.seed
    steps = len(distributed.shard(size, batch, ctx, seed, 0))
    early = log_iterations(steps, config.early_logs)
    for epoch in range(epoch, config.epochs):  # noqa: B020 (resumes from the checkpoint's epoch)
        generator = distributed.rank_generator(seed, ctx, epoch=epoch, device=device)
        estimates = []
        bar = common.progress(
            distributed.shard(size, batch, ctx, seed, epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not ctx.is_main,
        )
        for step, part in enumerate(bar):
            images, sums = train_data.batch(part.indices.to(device))
            estimates.append(
                clock.timed(lambda: train_step(net, optimizer, estimator, images, sums, generator, part.weight))  # noqa: B023 (called at once)
            )
            iteration = epoch * steps + step + 1
            if step + 1 == steps or iteration in early:
                trained = torch.cat(estimates)
                statistics = distributed.all_reduce_means(estimate_statistics(trained), ctx, trained.numel())
                estimates = []
                if ctx.is_main:
                    history.append(
                        {
                            "epoch": iteration / steps,
                            "iteration": iteration,
                            **evaluate(model, test_data),
                            **statistics,
                            "train_wall_s": clock.wall_s,
                            "train_cpu_s": clock.cpu_s,
                        }
                    )
                    bar.set_postfix(sum_acc=f"{history[-1]['test_sum_accuracy']:.3f}")
                    common.write_csv(out / "log.csv", history)
        if ctx.is_main:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "clock": [clock.wall_s, clock.cpu_s],
                "history": history,
                "epoch": epoch + 1,
            }
            run_folder.save_checkpoint(checkpoint_path, state)
            common.write_json(out / "log.json", {"config": common.config_json(config), "history": history})
    return history


def load_mnist_sequences(
    digits: int, seed: int, data_dir: Path | None, train_limit: int | None, test_limit: int | None
) -> tuple[DigitSequences, DigitSequences]:
    """Train and test sequences of MNIST digits (the first ``*_limit`` images of each split, if given)."""
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for split, limit in (("train", train_limit), ("test", test_limit)):
        images, labels = data.load_images("mnist", split, data_dir)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        splits.append(digit_sequences(images, labels, digits, generator))
    return splits[0], splits[1]


def run(config: AdditionConfig) -> int:
    """The ``catlog addition`` command (also under ``torchrun``: see docs/scaling.md)."""
    with distributed.process_group(config.device) as ctx:
        common.apply_threads(config.threads)
        data.check_dataset("mnist", config.data_dir)
        with run_folder.open_on_main(config, f"addition-d{config.digits}-{config.estimator}", ctx, MAY_CHANGE) as out:
            dtype, device = config.torch_dtype, ctx.device
            train_data, test_data = load_mnist_sequences(
                config.digits, config.seed, config.data_dir, config.train_limit, config.test_limit
            )
            history = train(config, train_data.to(device, dtype), test_data.to(device, dtype), out, ctx)
            if ctx.is_main:
                common.write_json(out / "summary.json", {**common.config_json(config), **history[-1]})
                print(json.dumps({"out": str(out), **history[-1]}, indent=2))
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog addition`` (without the common ones)."""
    parser.add_argument("--digits", "-D", type=int, default=4, help="digits per sequence, D")
    parser.add_argument(
        "--estimator",
        choices=estimators.NAMES,
        default="indecater",
        metavar="NAME",
        help="gradient estimator (names below)",
    )
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="N (K = 10 categories per digit)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training sequences")
    parser.add_argument("--batch-size", type=int, default=10, help="sequences per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--early-logs", type=int, default=8, help="log-spaced evaluations within the first epoch")
    parser.add_argument(
        "--train-limit", type=int, default=None, help="use only the first N MNIST train images (None: all)"
    )
    parser.add_argument(
        "--test-limit", type=int, default=None, help="use only the first N MNIST test images (None: all)"
    )
    data.add_data_options(parser, cache=False)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")


def build_config(args: argparse.Namespace) -> AdditionConfig:
    """The config of the parsed ``catlog addition`` options."""
    return common.config_from_args(AdditionConfig, args)


COMMANDS = (
    common.Command(
        "addition",
        help="MNIST addition of D digits (paper figure 4)",
        description=__doc__,
        add_options=add_options,
        config=build_config,
        run=run,
    ),
)
