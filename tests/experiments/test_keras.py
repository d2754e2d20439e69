"""The Keras defaults of the authors' models: Glorot-uniform layers, Keras' Adam and RMSprop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from catlog.experiments.addition import LeNet
from catlog.experiments.dvae_model import DiscreteVAE
from catlog.experiments.keras import KerasAdam, KerasRMSprop, glorot_uniform_


@pytest.mark.parametrize("model", [DiscreteVAE, LeNet])
def test_models_start_as_keras_layers(model: type[nn.Module]) -> None:
    # Kernels U(-a, a), a = sqrt(6 / (fan_in + fan_out)): every entry within a, variance a^2 / 3
    # within its standard error (Var of U^2 is a^4 (1/5 - 1/9)); biases zero.
    torch.manual_seed(0)
    layers = [m for m in model().modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert len(layers) == (6 if model is DiscreteVAE else 5)
    for layer in layers:
        weight = layer.weight.detach().double()
        area = weight[0, 0].numel()
        bound = math.sqrt(6 / ((weight.shape[0] + weight.shape[1]) * area))
        assert weight.abs().max() <= bound
        error = bound**2 * math.sqrt(1 / 5 - 1 / 9) / math.sqrt(weight.numel())
        assert abs(weight.square().mean().item() - bound**2 / 3) < 5 * error
        assert torch.count_nonzero(layer.bias) == 0


def test_glorot_leaves_other_modules_and_returns_the_module() -> None:
    norm = nn.LayerNorm(3)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), norm)
    assert glorot_uniform_(net) is net
    assert torch.equal(norm.weight, torch.ones(3))


def test_keras_adam_matches_the_formula_on_a_hand_worked_sequence() -> None:
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    optimiser = KerasAdam([theta], lr=0.1, beta_1=0.5, beta_2=0.75, eps=0.01)
    m = v = torch.zeros(2, dtype=torch.float64)
    expected = theta.detach().clone()
    for t, gradient in enumerate(([2.0, 0.5], [-1.0, 0.25], [3.0, -4.0]), start=1):
        g = torch.tensor(gradient, dtype=torch.float64)
        m, v = 0.5 * m + 0.5 * g, 0.75 * v + 0.25 * g**2
        expected -= 0.1 * math.sqrt(1 - 0.75**t) / (1 - 0.5**t) * m / (v.sqrt() + 0.01)
        theta.grad = g
        optimiser.step()
        torch.testing.assert_close(theta.detach(), expected, rtol=1e-14, atol=0)


def test_keras_adam_differs_from_torch_adam_on_tiny_gradients_only() -> None:
    # Keras' epsilon meets sqrt(v) before the bias correction: on a first step with g = 1e-6
    # the step is lr g / (g + eps / sqrt(1 - beta_2)), a third of torch's lr g / (g + eps).
    def first_step(optimiser_class: type[torch.optim.Optimizer], gradient: float) -> float:
        theta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        optimiser = optimiser_class([theta], lr=1.0, eps=1e-7)
        theta.grad = torch.tensor([gradient], dtype=torch.float64)
        optimiser.step()
        return -theta.item()

    assert first_step(KerasAdam, 1e-6) == pytest.approx(1e-6 / (1e-6 + 1e-7 / math.sqrt(1e-3)), rel=1e-12)
    assert first_step(torch.optim.Adam, 1e-6) == pytest.approx(1e-6 / (1e-6 + 1e-7), rel=1e-12)
    assert first_step(KerasAdam, 1.0) == pytest.approx(first_step(torch.optim.Adam, 1.0), rel=1e-5)


def test_keras_adam_resumes_from_its_state_dict() -> None:
    torch.manual_seed(0)
    gradients = torch.randn(5, 3, dtype=torch.float64)
    straight = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    whole = KerasAdam([straight], lr=0.1)
    for g in gradients:
        straight.grad = g
        whole.step()
    resumed = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    first = KerasAdam([resumed], lr=0.1)
    for g in gradients[:2]:
        resumed.grad = g
        first.step()
    second = KerasAdam([resumed], lr=0.1)
    second.load_state_dict(first.state_dict())
    for g in gradients[2:]:
        resumed.grad = g
        second.step()
    assert torch.equal(resumed, straight)


@pytest.mark.parametrize(("argument", "value"), [("lr", 0.0), ("beta_1", 1.0), ("beta_2", -0.1), ("eps", -1.0)])
def test_keras_adam_refuses_bad_settings(argument: str, value: float) -> None:
    with pytest.raises(ValueError, match=argument):
        KerasAdam([torch.zeros(1, requires_grad=True)], **{argument: value})


def test_keras_rmsprop_matches_the_formula_on_a_hand_worked_sequence() -> None:
    # v1 = 0.1 * 4 = 0.4;              theta1 = 1 - 0.5 * 2 / sqrt(0.4 + 0.1)
    # v2 = 0.9 * 0.4 + 0.1 * 1 = 0.46; theta2 = theta1 + 0.5 * 1 / sqrt(0.46 + 0.1)
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    optimiser = KerasRMSprop([theta], lr=0.5, rho=0.9, eps=0.1)
    expected = [1 - 0.5 * 2 / math.sqrt(0.5), 1 - 0.5 * 2 / math.sqrt(0.5) + 0.5 / math.sqrt(0.56)]
    for gradient, value in zip([2.0, -1.0], expected):
        theta.grad = torch.tensor([gradient], dtype=torch.float64)
        optimiser.step()
        assert theta.item() == pytest.approx(value, rel=1e-14)


def test_keras_rmsprop_first_step_scales_with_the_gradient() -> None:
    # eps inside the root: a gradient far below sqrt(eps) moves theta by about lr g / sqrt(eps),
    # where torch's RMSprop (eps outside) would move it by lr / sqrt(1 - rho) whatever g.
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimiser = KerasRMSprop([theta], lr=5.0)
    theta.grad = torch.tensor([2.5e-6, -5e-6], dtype=torch.float64)
    optimiser.step()
    expected = -5.0 * theta.grad / (0.1 * theta.grad**2 + 1e-7).sqrt()
    assert torch.allclose(theta.detach(), expected, rtol=1e-14)
    assert theta.abs().max().item() < 0.1


@pytest.mark.parametrize(("argument", "value"), [("lr", 0.0), ("rho", 1.0), ("eps", -1.0)])
def test_keras_rmsprop_refuses_bad_settings(argument: str, value: float) -> None:
    settings = {"lr": 1.0, argument: value}
    with pytest.raises(ValueError, match=argument):
        KerasRMSprop([torch.zeros(1, requires_grad=True)], **settings)
