"""MNIST addition's problem (paper section 6.4): ``D`` digits of ``K = 10``, ``f(x) = 1[sum_d x_d = y]``.

At the untrained (seeded) classifier, the logits ``[B, D, 10]`` of the first ``B`` test
sequences are fixed and an estimate is the gradient of ``sum_b E[f]`` w.r.t. them.
``f`` is an indicator, so the relaxed estimators do not apply; ``10^D`` states: no exact
gradient. :func:`through_classifier` is the training step's problem instead (benchmarks).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

import catlog
from catlog.experiments.addition_model import (
    LOSS_EPSILON,
    NUM_CLASSES,
    LeNet,
    addition_loss,
    load_mnist_sequences,
    sum_indicator,
)
from catlog.experiments.problems.problem import Problem, logits_problem


def untrained_logits(
    digits: int, batch: int, data_dir: Path | None, seed: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The untrained classifier's logits ``[B, D, 10]`` (initialised from ``seed``) of the first
    ``B = batch`` test sequences of ``digits`` digits, and their sums ``[B]``."""
    _, test = load_mnist_sequences(digits, seed, data_dir, 1, batch * digits)
    torch.manual_seed(seed)
    model = LeNet().to(device, dtype)
    images, sums = test.to(device, dtype).batch(torch.arange(min(batch, len(test)), device=device))
    with torch.no_grad():
        return model(images), sums


def estimates_and_gradients(
    estimator: catlog.Estimator,
    logits: torch.Tensor,
    sums: torch.Tensor,
    repeats: int,
    block: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``repeats`` independent estimates at fixed ``logits: [B, D, K]`` and labels ``sums: [B]``.

    The repeats form an extra leading batch dimension, ``block`` of them per estimator call.

    Returns:
        ``values [R, B]``; the gradients w.r.t. the logits ``[R, B*D*K]`` of ``sum_b value_b``
        and of the training loss ``mean_b -log(value_b + 1e-8)``, from the same estimates.
    """
    f = sum_indicator(sums)
    values, grads, loss_grads = [], [], []
    for start in range(0, repeats, block):
        leaf = logits.detach().expand(min(block, repeats - start), *logits.shape).clone().requires_grad_()
        value = estimator(f, leaf, generator=generator)
        (grad,) = torch.autograd.grad(value.sum(), leaf, retain_graph=True)
        (loss_grad,) = torch.autograd.grad(-torch.log(value + LOSS_EPSILON).mean(-1).sum(), leaf)
        values.append(value.detach())
        grads.append(grad.flatten(1))
        loss_grads.append(loss_grad.flatten(1))
    return torch.cat(values), torch.cat(grads), torch.cat(loss_grads)


def problem(
    digits: int, batch: int, data_dir: Path | None, seed: int, device: torch.device, dtype: torch.dtype
) -> Problem:
    """The gradient of ``sum_b E[f]`` w.r.t. :func:`untrained_logits`, batched as
    :func:`estimates_and_gradients` computes it."""
    logits, sums = untrained_logits(digits, batch, data_dir, seed, device, dtype)

    def batched(estimator: catlog.Estimator, count: int, generator: torch.Generator | None) -> torch.Tensor:
        return estimates_and_gradients(estimator, logits, sums, count, count, generator)[1]

    title = f"MNIST addition, D = {digits}, K = 10, {batch} sequences, untrained classifier"
    return replace(logits_problem("addition", title, logits, sum_indicator(sums), relaxable=False), batched=batched)


def through_classifier(model: LeNet, images: torch.Tensor, sums: torch.Tensor) -> Problem:
    """The training step's problem: images ``[B, D, 28, 28]`` through ``model`` to the loss
    ``mean_b -log(E[f] + 1e-8)``; the gradient w.r.t. the classifier's parameters."""
    f = sum_indicator(sums)

    def loss(estimator: catlog.Estimator, generator: torch.Generator | None) -> torch.Tensor:
        return addition_loss(estimator(f, model(images), generator=generator))

    digits = images.shape[1]
    title = f"MNIST addition training step, D = {digits}, batch {images.shape[0]}"
    return Problem("addition", title, digits, NUM_CLASSES, loss, tuple(model.parameters()), f, (images.shape[0],))
