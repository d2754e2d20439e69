"""The Keras defaults the authors' models rely on, in PyTorch (``tf_keras`` and Keras 3 agree on them).

- ``Dense``/``Conv2D`` kernels are Glorot-uniform and biases zero (:func:`glorot_uniform_`);
  PyTorch's defaults are about 1.3 to 2.3 times smaller in scale on the paper's layers.
- ``Adam`` adds epsilon (``1e-7``) to ``sqrt(v)`` before the bias correction is folded into the
  step size (:class:`KerasAdam`); ``torch.optim.Adam`` adds it after, a different step.
- ``RMSprop`` adds epsilon inside the square root (:class:`KerasRMSprop`, figure 2).

No clipping: the authors' optimisers are built with ``learning_rate`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

Parameters = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
"""What an optimiser steps: tensors, or parameter groups."""


def gradient(parameter: torch.Tensor) -> torch.Tensor:
    """``parameter.grad``; :meth:`KerasOptimizer.update` is only handed parameters that have one."""
    assert parameter.grad is not None
    return parameter.grad


class KerasOptimizer(torch.optim.Optimizer):
    """An optimiser that checks its settings by name and updates each parameter group in one call.

    Subclasses give ``bounds``, each setting's admissible interval ``(low, high, low_included)``
    (``high`` never included), and :meth:`update`. ``params``: tensors, or parameter groups
    (dicts with ``"params"`` and settings of their own) as ``torch.optim`` takes them.
    """

    bounds: dict[str, tuple[float, float, bool]] = {}

    def __init__(self, params: Parameters, **settings: float) -> None:
        for name, value in settings.items():
            low, high, closed = self.bounds[name]
            if not (low < value < high or (closed and value == low)):
                raise ValueError(f"{name}: expected a number in {'[' if closed else '('}{low}, {high}), got {value!r}")
        super().__init__(params, settings)

    def update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """One step of the parameters ``params`` of ``group`` that have a gradient."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self.update(group, params)
        return loss


class KerasRMSprop(KerasOptimizer):
    """RMSprop with ``theta -= lr g / sqrt(v + eps)``, ``v = rho v + (1 - rho) g^2`` from zero;
    ``lr > 0``, ``rho`` in ``[0, 1)``, ``eps >= 0`` (Keras' defaults 0.9, 1e-7).

    ``torch.optim.RMSprop`` adds ``eps`` outside the root: with figure 2's tiny gradients (about
    2.5e-6 per logit) its first step is ``lr / sqrt(1 - rho)`` whatever the gradient.
    """

    bounds = {"lr": (0.0, math.inf, False), "rho": (0.0, 1.0, True), "eps": (0.0, math.inf, True)}

    def __init__(self, params: Iterable[torch.Tensor], lr: float, rho: float = 0.9, eps: float = 1e-7) -> None:
        super().__init__(params, lr=lr, rho=rho, eps=eps)

    def update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """``v = rho v + (1 - rho) g^2``, ``theta -= lr g / sqrt(v + eps)`` for every parameter."""
        for parameter in params:
            if not self.state[parameter]:
                self.state[parameter]["square_average"] = torch.zeros_like(parameter)
            average, grad = self.state[parameter]["square_average"], gradient(parameter)
            average.mul_(group["rho"]).addcmul_(grad, grad, value=1 - group["rho"])
            parameter.addcdiv_(grad, (average + group["eps"]).sqrt_(), value=-group["lr"])


def glorot_uniform_(module: nn.Module) -> nn.Module:
    """Initialise every ``Linear`` and ``Conv2d`` in ``module`` as Keras' ``Dense``/``Conv2D`` do; returns it.

    Kernels ``W ~ U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))`` (``xavier_uniform_``'s fans, Keras'
    too), biases zero, drawn from torch's global generator in the order of ``module.modules()``.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


class KerasAdam(KerasOptimizer):
    """Adam as Keras has it: ``theta -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + eps)``.

    ``m = beta_1 m + (1 - beta_1) g``, ``v = beta_2 v + (1 - beta_2) g^2`` from zero, ``t`` the step
    count from 1 per parameter group; ``lr > 0``, ``beta_1, beta_2`` in ``[0, 1)``, ``eps >= 0``.
    This is ``torch.optim.Adam``'s step with epsilon ``eps sqrt(1 - beta_2^t)``: the two differ where
    gradients are tiny, early in training above all.
    """

    bounds = {
        "lr": (0.0, math.inf, False),
        "beta_1": (0.0, 1.0, True),
        "beta_2": (0.0, 1.0, True),
        "eps": (0.0, math.inf, True),
    }

    def __init__(
        self,
        params: Parameters,
        lr: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        eps: float = 1e-7,
    ) -> None:
        super().__init__(params, lr=lr, beta_1=beta_1, beta_2=beta_2, eps=eps)

    def update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """The Adam step of every parameter, as one ``torch._foreach_*`` call per operation."""
        for p in params:
            if not self.state[p]:
                self.state[p] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
        grads = [gradient(p) for p in params]
        means, squares = [self.state[p]["m"] for p in params], [self.state[p]["v"] for p in params]
        group["iterations"] = step = group.get("iterations", 0) + 1
        beta_1, beta_2 = group["beta_1"], group["beta_2"]
        torch._foreach_lerp_(means, grads, 1 - beta_1)
        torch._foreach_mul_(squares, beta_2)
        torch._foreach_addcmul_(squares, grads, grads, value=1 - beta_2)
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_add_(denominators, group["eps"])
        size = group["lr"] * (1 - beta_2**step) ** 0.5 / (1 - beta_1**step)
        torch._foreach_addcdiv_(params, means, denominators, value=-size)
