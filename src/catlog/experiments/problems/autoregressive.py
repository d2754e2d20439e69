"""The autoregressive problem: a causal network over ``D = 6`` tokens of ``K = 4``, two contexts.

``p(x_d | x_<d)`` is a small network with a prefix mask (a token may not repeat the
previous one), its weights ``~ N(0, 1)``; the gradient is taken w.r.t. those weights, and
the exact one enumerates the ``K^D`` sequences (:class:`catlog.Exact`). SCateR, REINFORCE
and RLOO apply; the relaxed estimators and DisARM do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

import catlog
from catlog.experiments.problems.problem import Problem


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
        conditional, num_variables, num_categories, (runs, batch), device=target.device, dtype=weights["readout"].dtype
    )
    return list(params.values()), dist, f


def problem(
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    num_variables: int = 6,
    num_categories: int = 4,
    batch: int = 2,
    hidden: int = 8,
) -> Problem:
    """:func:`causal_network` with weights ``~ N(0, 1)`` from ``seed``; exact gradient by enumeration.

    Repeated estimates are batched: ``r`` copies of the weights give ``r`` estimates in one call.
    """
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
    cast = {key: value.to(device, dtype) for key, value in weights.items()}
    params, dist, f = causal_network(cast, target, 1)

    def loss(estimator: catlog.Estimator, generator: torch.Generator | None) -> torch.Tensor:
        return estimator(f, dist, generator=generator).sum()

    def batched(estimator: catlog.Estimator, count: int, generator: torch.Generator | None) -> torch.Tensor:
        copies, copies_dist, copies_f = causal_network(cast, target, count)
        value = estimator(copies_f, copies_dist, generator=generator)
        return torch.cat([g.flatten(1) for g in torch.autograd.grad(value.sum(), copies)], 1)

    exact_params, exact_dist, exact_f = causal_network(
        {key: value.to(device) for key, value in weights.items()}, target, 1
    )
    exact = torch.autograd.grad(catlog.Exact()(exact_f, exact_dist).sum(), exact_params)
    title = f"autoregressive, prefix mask, D = {num_variables}, K = {num_categories}, batch {batch}"
    return Problem(
        "autoregressive",
        title,
        num_variables,
        num_categories,
        loss,
        tuple(params),
        f,
        (1, batch),
        autoregressive=True,
        exact=torch.cat([g.flatten() for g in exact]),
        batched=batched,
    )
