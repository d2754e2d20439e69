"""The problems of ``catlog compare``: each turns an estimator into repeated gradient estimates.

A :class:`Problem` holds what the comparison needs: the sizes ``D``, ``K`` that
``Estimator.cost`` takes, which estimators apply (independent logits or an
:class:`catlog.Autoregressive`; whether ``f`` accepts relaxed values), the exact
gradient where enumerating ``K^D`` states is feasible, and ``gradients(estimator,
repeats, block, generator) -> [R, P]``: ``R`` independent estimates of the same
gradient at fixed parameters, ``block`` of them per estimator call where the problem
can batch them. The problems reuse the experiments' own functions:

- ``fig1``: figure 1's non-separable ``f(x) = (sum_d |x_d - b_d|)^2 / D``
  (:mod:`catlog.experiments.synthetic_gradients`), gradient w.r.t. the logits;
- ``binary``: the same ``f`` on ``K = 2`` (a squared Hamming distance), where DisARM applies;
- ``autoregressive``: a causal network over ``D = 6`` tokens of ``K = 4`` for two
  contexts, with a prefix mask (a token may not repeat the previous one), gradient
  w.r.t. the network's weights (:func:`autoregressive_problem`);
- ``dvae``: the discrete VAE's encoder at a fixed checkpoint, gradient of the batch-mean
  negative ELBO w.r.t. the encoder's weights (``dvae_model.encoder_gradients``);
- ``addition``: MNIST addition at the untrained classifier, gradient of ``sum_b E[f]``
  w.r.t. the logits (``addition_variance.repeated_gradients``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import catlog
from catlog.experiments import addition_model, addition_variance, common, synthetic_gradients
from catlog.experiments.dvae_model import DiscreteVAE, encoder_gradients, train_step
from catlog.experiments.keras import KerasAdam

Gradients = Callable[[catlog.Estimator, int, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Problem:
    """One problem of the suite.

    Attributes:
        name: short name (``fig1``, ``binary``, ...).
        title: one line saying what it is.
        num_variables, num_categories: ``D``, ``K`` (for ``Estimator.cost``).
        autoregressive: the distribution is a :class:`catlog.Autoregressive` (SCateR, not IndeCateR).
        relaxable: ``f`` accepts relaxed float values, so relaxed estimators apply.
        gradients: ``(estimator, repeats, block, generator) -> [R, P]`` independent estimates.
        exact: ``[P]`` exact gradient (float64), or ``None`` where enumeration is not done.
        repeats: how many estimates measure the variance.
    """

    name: str
    title: str
    num_variables: int
    num_categories: int
    autoregressive: bool
    relaxable: bool
    gradients: Gradients
    exact: torch.Tensor | None
    repeats: int


def logits_problem(name: str, title: str, problem: synthetic_gradients.Problem, repeats: int) -> Problem:
    """A figure-1-style problem (logits ``[D, K]`` as the parameters) with its exact gradient."""

    def gradients(estimator: catlog.Estimator, count: int, block: int, generator: torch.Generator) -> torch.Tensor:
        _, (grads,) = common.repeated_gradients(
            estimator, problem, problem.logits, count, block, generator, [lambda value: value]
        )
        return grads

    num_variables, num_categories = problem.logits.shape
    exact = synthetic_gradients.exact_gradient(problem)
    return Problem(name, title, num_variables, num_categories, False, True, gradients, exact, repeats)


def fig1_problem(
    num_variables: int, num_categories: int, seed: int, repeats: int, device: torch.device, dtype: torch.dtype
) -> Problem:
    """Figure 1's non-separable ``f`` on ``D x K`` logits ``~ N(0, 1)``."""
    problem = synthetic_gradients.make_problem(num_variables, num_categories, "nonseparable", seed, device, dtype)
    title = f"fig. 1 non-separable f, D = {num_variables}, K = {num_categories}"
    return logits_problem("fig1", title, problem, repeats)


def binary_problem(num_variables: int, seed: int, repeats: int, device: torch.device, dtype: torch.dtype) -> Problem:
    """``K = 2``: ``f(x) = (Hamming distance of x to b)^2 / D`` (figure 1's non-separable ``f``)."""
    problem = synthetic_gradients.make_problem(num_variables, 2, "nonseparable", seed, device, dtype)
    return logits_problem("binary", f"binary, (Hamming distance)^2 / D, D = {num_variables}", problem, repeats)


def causal_network(
    weights: dict[str, torch.Tensor], target: torch.Tensor, runs: int
) -> tuple[list[torch.Tensor], catlog.Autoregressive, Callable[[torch.Tensor], torch.Tensor]]:
    """The autoregressive problem for ``runs`` independent estimates at once.

    ``p(x_d | x_<d) = softmax(W tanh(c + sum_{i<d} E[x_i] + P[x_{d-1}] + q_d))`` with the
    previous token's category impossible (a prefix mask); context ``c: [B, H]``, weights
    shared by all positions. Every weight gets a leading run dimension (``runs`` copies),
    so one call gives ``runs`` estimates and one backward pass their gradients.
    ``f(x) = (sum_d |x_d - b_d|)^2 / D + cos(x_0 x_{D-1})``, ``b = target: [B, D]``.

    Returns:
        ``(parameters [runs, ...], distribution with batch [runs, B], f)``.
    """
    params = {key: value.expand(runs, *value.shape).clone().requires_grad_() for key, value in weights.items()}
    batch, num_variables = target.shape
    num_categories = params["readout"].shape[-1]
    categories = torch.arange(num_categories, device=target.device)

    def conditional(x: torch.Tensor, d: int) -> torch.Tensor:
        hidden = params["context"] + params["position"][:, d, None]
        if d > 0:
            prefix = F.one_hot(x[..., :d], num_categories).to(hidden.dtype).sum(-2)
            previous = F.one_hot(x[..., d - 1], num_categories).to(hidden.dtype)
            hidden = hidden + torch.einsum("mrbk,rkh->mrbh", prefix, params["embed"])
            hidden = hidden + torch.einsum("mrbk,rkh->mrbh", previous, params["previous"])
        logits = torch.einsum("...rbh,rhk->...rbk", torch.tanh(hidden), params["readout"])
        logits = logits.expand(x.shape[0], *logits.shape[-3:])
        if d == 0:
            return logits
        return logits.masked_fill(x[..., d - 1, None] == categories, -math.inf)

    def f(x: torch.Tensor) -> torch.Tensor:
        distance = (x - target).abs().sum(-1).to(weights["readout"].dtype)
        return distance.square() / num_variables + torch.cos((x[..., 0] * x[..., -1]).to(distance.dtype))

    dist = catlog.Autoregressive(
        conditional,
        num_variables,
        num_categories,
        (runs, batch),
        device=target.device,
        dtype=weights["readout"].dtype,
    )
    return list(params.values()), dist, f


def autoregressive_problem(
    seed: int,
    repeats: int,
    device: torch.device,
    dtype: torch.dtype,
    num_variables: int = 6,
    num_categories: int = 4,
    batch: int = 2,
    hidden: int = 8,
) -> Problem:
    """:func:`causal_network` with weights ``~ N(0, 1)`` from ``seed``; exact gradient by enumeration."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "context": (batch, hidden),
        "position": (num_variables, hidden),
        "embed": (num_categories, hidden),
        "previous": (num_categories, hidden),
        "readout": (hidden, num_categories),
    }
    weights = {key: torch.randn(*shape, generator=generator, dtype=torch.float64) for key, shape in shapes.items()}
    target = torch.randint(num_categories, (batch, num_variables), generator=generator).to(device)

    def gradients(estimator: catlog.Estimator, count: int, block: int, generator: torch.Generator) -> torch.Tensor:
        cast = {key: value.to(device, dtype) for key, value in weights.items()}
        parts = []
        for start in range(0, count, block):
            params, dist, f = causal_network(cast, target, min(block, count - start))
            value = estimator(f, dist, generator=generator)
            parts.append(torch.cat([g.flatten(1) for g in torch.autograd.grad(value.sum(), params)], 1))
        return torch.cat(parts)

    params, dist, f = causal_network({key: value.to(device) for key, value in weights.items()}, target, 1)
    exact = torch.autograd.grad(catlog.Exact()(f, dist).sum(), params)
    title = f"autoregressive, prefix mask, D = {num_variables}, K = {num_categories}, batch {batch}"
    exact_flat = torch.cat([g.flatten() for g in exact])
    return Problem("autoregressive", title, num_variables, num_categories, True, False, gradients, exact_flat, repeats)


def trained_dvae(
    checkpoint: Path | None, steps: int, images: torch.Tensor, seed: int, device: torch.device, dtype: torch.dtype
) -> DiscreteVAE:
    """The D = 200 discrete VAE from a ``catlog dvae`` ``checkpoint``, or trained here.

    Without a checkpoint: initialised from ``seed`` and trained ``steps`` Adam steps (lr 1e-3)
    on batches of 100 of ``images: [N, 784]`` with RLOO(2) (cheap; any unbiased estimator would do).
    """
    torch.manual_seed(seed)
    model = DiscreteVAE().to(device, dtype)
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True)["model"])
        return model
    optimizer = KerasAdam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=device).manual_seed(seed)
    for step in range(steps):
        start = (100 * step) % max(1, images.shape[0] - 100)
        train_step(model, optimizer, catlog.RLOO(2), images[start : start + 100], generator)
    return model


def dvae_problem(
    checkpoint: Path | None,
    steps: int,
    batch: int,
    data_dir: Path | None,
    seed: int,
    repeats: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Problem:
    """The encoder of a fixed discrete VAE (:func:`trained_dvae`) on the first ``batch`` MNIST
    validation images; variance only (``2^200`` states)."""
    from catlog.experiments.dvae_model import load_split

    splits = load_split("mnist", data_dir, device, dtype)
    model = trained_dvae(checkpoint, steps, splits["train"], seed, device, dtype)
    images = splits["val"][:batch]

    def gradients(estimator: catlog.Estimator, count: int, block: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_gradients(model, estimator, images, count, generator)

    origin = f"checkpoint {checkpoint.name}" if checkpoint is not None else f"{steps} RLOO(2) steps"
    title = f"DVAE encoder, D = 200, K = 2, {batch} images, {origin}"
    return Problem("dvae", title, model.num_latents, 2, False, True, gradients, None, repeats)


def addition_problem(
    digits: int,
    batch: int,
    data_dir: Path | None,
    seed: int,
    repeats: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Problem:
    """MNIST addition of ``digits`` digits at the untrained (seeded) classifier, on ``batch`` test
    sequences; variance only. ``f`` is an indicator, so relaxed estimators do not apply."""
    _, test = addition_model.load_mnist_sequences(digits, seed, data_dir, 1, batch * digits)
    torch.manual_seed(seed)
    model = addition_model.LeNet().to(device, dtype)
    images, sums = test.to(device, dtype).batch(torch.arange(min(batch, len(test)), device=device))
    with torch.no_grad():
        logits = model(images)

    def gradients(estimator: catlog.Estimator, count: int, block: int, generator: torch.Generator) -> torch.Tensor:
        return addition_variance.repeated_gradients(estimator, logits, sums, count, block, generator)[1]

    title = f"MNIST addition, D = {digits}, K = 10, {batch} sequences, untrained classifier"
    return Problem("addition", title, digits, addition_model.NUM_CLASSES, False, False, gradients, None, repeats)
