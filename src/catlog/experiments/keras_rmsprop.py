"""RMSprop as Keras has it: epsilon inside the square root (figure 2's optimiser).

Keras (``tf_keras`` and Keras 3, ``optimizers/rmsprop.py``, no momentum, not
centred) updates every parameter ``theta`` with gradient ``g`` as

    v     <- rho v + (1 - rho) g^2          (v starts at zero)
    theta <- theta - lr g / sqrt(v + eps)

``torch.optim.RMSprop`` adds ``eps`` outside the root, ``g / (sqrt(v) + eps)``:
with the tiny gradients of figure 2 (about 2.5e-6 per logit) that makes the
first step ``lr / sqrt(1 - rho)`` whatever the gradient, which is not the
paper's optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop with ``theta -= lr g / sqrt(v + eps)``, ``v = rho v + (1 - rho) g^2``.

    Args:
        params: parameters (or parameter groups) to optimise.
        lr: learning rate, ``> 0``.
        rho: decay of the squared-gradient average, in ``[0, 1)`` (Keras' default 0.9).
        eps: added to ``v`` inside the square root, ``>= 0`` (Keras' default 1e-7).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, rho: float = 0.9, eps: float = 1e-7) -> None:
        if not lr > 0:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if not 0 <= rho < 1:
            raise ValueError(f"rho: expected a number in [0, 1), got {rho!r}")
        if not eps >= 0:
            raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["square_average"] = torch.zeros_like(parameter)
                average = state["square_average"]
                average.mul_(group["rho"]).addcmul_(parameter.grad, parameter.grad, value=1 - group["rho"])
                parameter.addcdiv_(parameter.grad, (average + group["eps"]).sqrt_(), value=-group["lr"])
        return loss
