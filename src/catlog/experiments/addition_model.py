"""The MNIST-addition task of the paper's section 6.4: data, classifier, objective and loss.

A sequence of ``D`` MNIST images is labelled with the sum of its digits; the classifier
(:class:`LeNet`) gives logits ``[B, D, 10]`` and ``f(x) = 1[sum_d x_d = y]``
(:func:`sum_indicator`); the training loss is ``-log(E[f] + 1e-8)`` (:func:`addition_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import catlog
from catlog.experiments import data, estimators
from catlog.experiments.keras import glorot_uniform_

NUM_CLASSES = 10
LOSS_EPSILON = 1e-8
ESTIMATORS: tuple[str, ...] = ("indecater", "indecater-pv", "rloo-s", "rloo-f", "reinforce-s")
DEFAULT_SAMPLES = 10


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
    """Shuffle ``images: [N, 28, 28]`` (digit ``labels: LongTensor[N]``) with ``generator`` and cut them
    into ``ceil(N / D)`` sequences of ``D = digits`` images labelled by their sum; every image is used,
    and when ``D`` does not divide ``N`` the last sequence is completed with the first images of the
    same order (e.g. 8 of the 10000 test images appear twice for D = 12)."""
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
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's overloads omit it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[*B, 10]`` of images ``[*B, 28, 28]``, one classifier pass per image."""
        batch = images.shape[:-2]
        logits: torch.Tensor = self.layers(images.reshape(-1, 1, *images.shape[-2:]))
        return logits.view(*batch, NUM_CLASSES)


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
