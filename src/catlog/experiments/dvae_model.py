"""The discrete VAE of the paper's section 6.3: data splits, model, loss, one training step, evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import catlog
from catlog._binary import log_softmax
from catlog.experiments import data, estimators
from catlog.experiments.keras import glorot_uniform_

IMAGE_DIM = 784
DATASETS = ("mnist", "fashion-mnist", "omniglot")
BINARISED = {"mnist": True, "fashion-mnist": False, "omniglot": True}
VALIDATION_SIZE, TEST_SIZE = 1000, 9000
DEFAULT_SAMPLES = 2
"""``N`` of ``catlog dvae`` (also of older runs, whose config.json says ``samples: null``)."""
PROJECT_FROM_SAMPLES = 8
"""From this many samples per call the reconstruction loss projects the targets once
(:meth:`DiscreteVAE.reconstruction_loss`); below, it forms ``l t`` elementwise."""


class DiscreteVAE(nn.Module):
    """Encoder 784-384-256-D(K-1), ``D = num_latents`` latents of ``K = num_categories >= 2`` categories,
    decoder D(K-1)-256-384-784; ReLU between layers, Keras' initialisation (:func:`.keras.glorot_uniform_`).

    The encoder gives the logits of categories ``1..K-1`` of each latent, category 0 has logit 0
    (``K = 2``: one Bernoulli logit per latent, the paper's 784-384-256-200); the decoder reads
    ``onehot(x)[..., 1:]`` flattened (``x`` itself for ``K = 2``) and gives the pixels' Bernoulli logits.
    """

    def __init__(self, num_latents: int = 200, num_categories: int = 2) -> None:
        super().__init__()
        if num_latents < 1:
            raise ValueError(f"num_latents: expected a positive integer, got {num_latents}")
        if num_categories < 2:
            raise ValueError(f"num_categories: expected an integer >= 2, got {num_categories}")
        self.num_latents, self.num_categories = num_latents, num_categories
        code = num_latents * (num_categories - 1)
        self.encoder = nn.Sequential(
            nn.Linear(IMAGE_DIM, 384), nn.ReLU(), nn.Linear(384, 256), nn.ReLU(), nn.Linear(256, code)
        )
        self.decoder_hidden = nn.Sequential(
            nn.Linear(code, 256), nn.ReLU(inplace=True), nn.Linear(256, 384), nn.ReLU(inplace=True)
        )
        self.decoder_out = nn.Linear(384, IMAGE_DIM)
        glorot_uniform_(self)

    @property
    def one_hot(self) -> bool:
        """Whether :meth:`negative_log_likelihood` takes one-hot latents (``K > 2``) rather than indices."""
        return self.num_categories > 2

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder logits ``[B, D, K]`` (column 0 is zero) of images ``[B, 784]``."""
        free = self.encoder(images).unflatten(-1, (self.num_latents, self.num_categories - 1))
        return F.pad(free, (1, 0))

    def negative_log_likelihood(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``-log p(targets | x) = sum_i softplus(l_i) - l_i t_i`` with decoder logits ``l = h W^T + b``.

        Args:
            x: latents ``[M, B, D]`` (category indices, or relaxed values for K = 2), or
                one-hot ``[M, B, D, K]`` when :attr:`one_hot`.
            targets: pixel targets ``t: [B, 784]`` in [0, 1].

        Returns:
            ``[M, B]`` (see :meth:`reconstruction_loss`, which serves many calls on the same targets).
        """
        return self.reconstruction_loss(targets, x.shape[0])(x)

    def reconstruction_loss(self, targets: torch.Tensor, evaluations: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> -log p(targets | x)`` (:meth:`negative_log_likelihood`) for fixed targets ``[B, 784]``,
        for an estimator that evaluates it on ``evaluations`` rows in all (its ``cost().evaluations``).

        From :data:`PROJECT_FROM_SAMPLES` evaluations on, ``t W`` and ``b . t`` are computed
        once, here, and a call with at least that many samples ``M`` computes ``sum_i l_i t_i``
        as ``h . (t W) + b . t``, which never forms the ``[M, B, 784]`` product (an estimator
        calls the loss once per chunk of rows). Otherwise it is formed elementwise: ``t W``
        and its gradient (two ``[B, 784] x [784, 384]`` products and the sum of two weight
        gradients) cost more than ``M`` elementwise passes. The loss keeps no state between
        calls, so a chunk recomputed in the backward pass (``IndeCateR(pathwise="all",
        chunk_size=...)``) builds the same graph again. ``softplus(l).sum(-1)`` is the only
        other pass over the 784 outputs: a fused ``binary_cross_entropy_with_logits``
        measured slower.
        """
        weight, bias = self.decoder_out.weight, self.decoder_out.bias
        projection = (targets @ weight, targets @ bias) if evaluations >= PROJECT_FROM_SAMPLES else None

        def loss(x: torch.Tensor) -> torch.Tensor:
            z = x[..., 1:].flatten(-2) if self.one_hot else x
            rows = z.shape[:-1]  # [M, B]; the decoder runs on a 2-D [M * B, D(K-1)] (fewer copies in backward)
            hidden = self.decoder_hidden(z.reshape(-1, z.shape[-1]).to(weight.dtype))
            out: torch.Tensor = self.decoder_out(hidden)
            if projection is None or rows[0] < PROJECT_FROM_SAMPLES:
                agreement = (out.view(*rows, -1) * targets).sum(-1)
            else:
                agreement = (hidden.view(*rows, -1) * projection[0]).sum(-1) + projection[1]
            return F.softplus(out).sum(-1).view(rows) - agreement

        return loss


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """``KL(q || uniform) = sum_d sum_k q_dk log q_dk + D log K`` for logits ``[B, D, K]``; returns ``[B]``."""
    log_q = log_softmax(logits)
    num_latents, num_categories = logits.shape[-2:]
    return (log_q.exp() * log_q).sum((-2, -1)) + num_latents * math.log(num_categories)


def negative_elbo(
    model: DiscreteVAE, estimator: catlog.Estimator, images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Negative ELBO ``E_q[-log p(t | X)] + KL(q || uniform)`` of images ``[B, 784]``; returns ``[B]``.

    Only ``E_q[-log p(t | X)]`` goes through ``estimator`` (its gradient reaches the encoder);
    the KL is analytic.
    """
    logits = model.logits(images)
    loss = model.reconstruction_loss(images, estimator.cost(model.num_latents, model.num_categories).evaluations)
    return estimator(loss, logits, one_hot=model.one_hot, generator=generator) + kl_to_uniform(logits)


def train_step(
    model: DiscreteVAE,
    optimizer: torch.optim.Optimizer,
    estimator: catlog.Estimator,
    images: torch.Tensor,
    generator: torch.Generator | None = None,
) -> float:
    """One optimiser step on the batch mean of :func:`negative_elbo`; returns that mean (before the step)."""
    optimizer.zero_grad(set_to_none=True)
    loss = negative_elbo(model, estimator, images, generator).mean()
    torch.autograd.backward(loss)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_negative_elbo(
    model: DiscreteVAE,
    images: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
) -> float:
    """Mean negative ELBO over images ``[N, 784]``, ``E_q`` estimated with ``num_samples`` latent samples each.

    Unbiased for the negative ELBO whatever ``num_samples``; more samples only lower its noise.
    """
    estimator = catlog.REINFORCE(num_samples)
    total = 0.0
    for batch in torch.split(images, batch_size):
        total += float(negative_elbo(model, estimator, batch, generator).sum())
    return total / images.shape[0]


def load_split(
    dataset: str, data_dir: Path | None, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` targets ``[N, 784]``: binarised at 0.5 for MNIST and Omniglot."""

    def prepare(images: torch.Tensor) -> torch.Tensor:
        images = images.flatten(1)
        return (data.binarize(images) if BINARISED[dataset] else images).to(device=device, dtype=dtype)

    train = prepare(data.load_images(dataset, "train", data_dir, cache=cache_dir)[0])
    test = prepare(data.load_images(dataset, "test", data_dir, cache=cache_dir)[0])
    return {
        "train": train,
        "val": test[:VALIDATION_SIZE],
        "test": test[VALIDATION_SIZE : VALIDATION_SIZE + TEST_SIZE],
    }


def make_estimator(
    name: str, num_latents: int, num_categories: int, samples: int = DEFAULT_SAMPLES, chunk_size: int | None = None
) -> catlog.Estimator:
    """The estimator ``name`` of the vocabulary with ``N = samples`` on ``D = num_latents`` latents of ``K`` categories.

    ``chunk_size`` bounds IndeCateR's perturbed rows per decoder call (ignored by the others).
    """
    return estimators.make(name, estimators.Budget(samples, num_latents, num_categories, chunk_size=chunk_size))
