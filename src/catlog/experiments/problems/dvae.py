"""The discrete VAE's problem (paper section 6.3): the encoder's gradient of the negative ELBO.

At fixed parameters of a :class:`~catlog.experiments.dvae_model.DiscreteVAE` and a fixed
batch of images ``[B, 784]``, an estimate is the gradient of the batch-mean negative ELBO
(:func:`~catlog.experiments.dvae_model.negative_elbo`) w.r.t. the encoder's weights,
where the estimator acts (the decoder's gradient is pathwise). ``2^200`` states: no exact
gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

import catlog
from catlog.experiments import run_folder
from catlog.experiments.dvae_model import DiscreteVAE, load_split, negative_elbo, train_step
from catlog.experiments.keras import KerasAdam
from catlog.experiments.problems.problem import Problem


def problem(
    model: DiscreteVAE,
    images: torch.Tensor,
    title: str = "DVAE encoder",
    parameters: Iterable[torch.Tensor] | None = None,
) -> Problem:
    """The gradient of ``mean_b negative_elbo(model, estimator, images)`` w.r.t. ``parameters``
    (default: the encoder's), one estimate per call."""

    def loss(estimator: catlog.Estimator, generator: torch.Generator | None) -> torch.Tensor:
        return negative_elbo(model, estimator, images, generator).mean()

    def f(x: torch.Tensor) -> torch.Tensor:
        return model.negative_log_likelihood(x, images)

    chosen = tuple(model.encoder.parameters() if parameters is None else parameters)
    return Problem(
        "dvae",
        title,
        model.num_latents,
        model.num_categories,
        loss,
        chosen,
        f,
        (images.shape[0],),
        relaxable=True,
    )


def trained_model(
    checkpoint: Path | None, steps: int, images: torch.Tensor, seed: int, device: torch.device, dtype: torch.dtype
) -> DiscreteVAE:
    """The D = 200 discrete VAE from a ``catlog dvae`` ``checkpoint``, or trained here.

    Without a checkpoint: initialised from ``seed`` and trained ``steps`` Keras-Adam steps (lr 1e-3)
    on batches of 100 of ``images: [N, 784]`` with RLOO(2) (cheap; any unbiased estimator would do).
    """
    torch.manual_seed(seed)
    model = DiscreteVAE().to(device, dtype)
    if checkpoint is not None:
        return run_folder.load_model(checkpoint, model)
    optimizer = KerasAdam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=device).manual_seed(seed)
    for step in range(steps):
        start = (100 * step) % max(1, images.shape[0] - 100)
        train_step(model, optimizer, catlog.RLOO(2), images[start : start + 100], generator)
    return model


def mnist(
    checkpoint: Path | None,
    steps: int,
    batch: int,
    data_dir: Path | None,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Problem:
    """``catlog compare``'s problem: the encoder of :func:`trained_model` on the first ``batch``
    MNIST validation images."""
    splits = load_split("mnist", data_dir, device, dtype)
    model = trained_model(checkpoint, steps, splits["train"], seed, device, dtype)
    origin = f"checkpoint {checkpoint.name}" if checkpoint is not None else f"{steps} RLOO(2) steps"
    return problem(model, splits["val"][:batch], f"DVAE encoder, D = 200, K = 2, {batch} images, {origin}")
