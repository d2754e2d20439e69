"""REBAR and RELAX: REINFORCE with a learned, reparameterised control variate
(Tucker et al., NeurIPS 2017; Grathwohl et al., ICLR 2018), for categorical variables."""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from catlog._objective import Objective
from catlog._sampling import gumbel_noise
from catlog._validation import Checked, check_positive, check_samples
from catlog.estimator import Cost, Estimator
from catlog.gumbel_rao import conditional_gumbel


class LearnedControlVariate(Estimator):
    """What REBAR and RELAX share: the estimator, its learned parameters and their training
    (described in :class:`RELAX`); a subclass gives the control variate ``c`` (:meth:`_control`)."""

    num_samples = Checked(check_samples(1))

    def __init__(
        self,
        num_samples: int,
        temperature: float,
        *,
        one_hot: bool,
        generator: torch.Generator | None,
        validate_args: bool | None,
        chunk_size: int | None,
    ) -> None:
        super().__init__(one_hot=one_hot, generator=generator, validate_args=validate_args, chunk_size=chunk_size)
        self.num_samples = num_samples
        self.temperature = check_positive("temperature", temperature)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(self.temperature)))

    control_argument = "f"
    """The argument that defines the control variate (named in errors)."""

    def parameters(self) -> Iterator[nn.Parameter]:
        """The control variate's learned parameters, for an optimiser (see :class:`RELAX`)."""
        yield self.log_temperature

    @abc.abstractmethod
    def _control(self, objective: Objective, relaxed: torch.Tensor) -> torch.Tensor:
        """``c`` on relaxed one-hot ``[M, *B, D, K]``; returns ``[M, *B]`` with autograd."""

    def estimate(self, objective: Objective, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        leaf = logits.detach().requires_grad_(True)
        fixed = leaf.detach().log_softmax(-1).movedim(-1, 0)  # [K, *B, D]
        noise = gumbel_noise((fixed.shape[0], self.num_samples, *fixed.shape[1:]), fixed, generator)
        samples = (fixed.unsqueeze(1) + noise).argmax(0)  # [N, *B, D]
        values = objective(samples)
        if not (torch.is_grad_enabled() and logits.requires_grad):
            return values.mean(0)
        with torch.enable_grad():
            gradient = self._gradient(objective, leaf, noise, samples, values.detach(), generator)
        # -inf * 0 would be NaN (validation tells when no logit is -inf)
        finite = logits if objective.every_possible else logits.masked_fill(logits.detach() == -math.inf, 0.0)
        score = (finite * gradient.detach()).flatten(-2).sum(-1)
        return values.mean(0) + (score - score.detach())

    def _gradient(
        self,
        objective: Objective,
        logits: torch.Tensor,
        noise: torch.Tensor,
        samples: torch.Tensor,
        values: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``g: [*B, D, K]`` (see :class:`RELAX`), and ``d |g|^2 / d phi`` added into the parameters' ``.grad``.

        Shapes: ``logits: [*B, D, K]`` (a leaf with autograd), ``noise: [K, N, *B, D]``,
        ``samples: LongTensor[N, *B, D]``, ``values: [N, *B]``.
        """
        # a finite floor for impossible categories (exp(-1e4) is 0 in every dtype): -inf in z would
        # give the temperature a NaN gradient, and masks around it are slow in double backward
        log_probs = logits.log_softmax(-1)
        log_probs = log_probs if objective.every_possible else log_probs.clamp_min(-1e4)
        theta = log_probs.movedim(-1, 0)  # [K, *B, D]
        free = theta.unsqueeze(1)
        conditional = conditional_gumbel(log_probs, samples, 1, generator)[:, 0]
        temperature = self.log_temperature.to(theta).exp()
        relaxed = (torch.cat([free + noise, free + conditional], 1) / temperature).softmax(0).movedim(0, -1)
        control = self._control(objective, relaxed)  # [2N, *B]
        free_control, conditional_control = control.chunk(2)
        difference = (free_control - conditional_control).sum() / self.num_samples
        reparameterised = None
        if difference.requires_grad:
            (reparameterised,) = torch.autograd.grad(difference, logits, create_graph=True, allow_unused=True)
        if reparameterised is None:
            raise ValueError(
                f"{self.control_argument}: {type(self).__name__} differentiates the control variate in its relaxed "
                f"input, got one with no gradient path to it; {self.control_argument} must be continuous and "
                "differentiable in its float input"
            )
        probs = theta.detach().exp()
        categories = torch.arange(theta.shape[0], device=theta.device).view(-1, *([1] * samples.ndim))
        score = (categories == samples).to(theta.dtype) - probs.unsqueeze(1)  # [K, N, *B, D]
        weight = (values - conditional_control).view(1, *values.shape, *([1] * (samples.ndim - values.ndim)))
        gradient = (weight * score).mean(1).movedim(0, -1) + reparameterised  # [*B, D, K]
        parameters = [parameter for parameter in self.parameters() if parameter.requires_grad]
        if parameters:
            variance_gradients = torch.autograd.grad(gradient.square().sum(), parameters, allow_unused=True)
            for parameter, variance_gradient in zip(parameters, variance_gradients, strict=True):
                if variance_gradient is not None:
                    parameter.grad = variance_gradient if parameter.grad is None else parameter.grad + variance_gradient
        return gradient


class REBAR(LearnedControlVariate):
    """REBAR (Tucker, Mnih, Maddison, Lawson and Sohl-Dickstein, "REBAR: Low-variance, unbiased
    gradient estimates for discrete latent variable models", NeurIPS 2017), for categorical variables.

    The control variate is ``f`` itself on the relaxed sample, scaled:
    ``c(z) = scale * f(softmax(z / temperature))``, with ``scale`` and ``temperature``
    learned to minimise the variance: :class:`RELAX` with that ``c`` (see it for the
    estimator, its unbiasedness and how to step the optimiser). ``f`` must accept relaxed input:
    one-hot vectors ``[M, *B, D, K]`` with ``one_hot``, else category values
    ``sum_k k y_k`` (``[M, *B, D]`` floats), and be differentiable in it.

    Args:
        num_samples: ``N >= 1`` samples; ``3 N`` evaluations of ``f`` (hard, relaxed, conditionally relaxed).
        temperature: initial temperature, ``> 0`` (learned in log space).
        scale: initial ``scale`` (learned).
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` (and the control variate) on at most this many sample rows
            per call, to bound peak memory; ``None``: all in one call. The result does not
            depend on it.
    """

    def __init__(
        self,
        num_samples: int,
        temperature: float = 0.5,
        scale: float = 1.0,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples,
            temperature,
            one_hot=one_hot,
            generator=generator,
            validate_args=validate_args,
            chunk_size=chunk_size,
        )
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
            raise ValueError(f"scale: expected a finite number, got {scale!r}")
        self.scale = float(scale)
        self.learned_scale = nn.Parameter(torch.tensor(self.scale))

    def parameters(self) -> Iterator[nn.Parameter]:
        """The log temperature and the scale."""
        yield self.log_temperature
        yield self.learned_scale

    def _control(self, objective: Objective, relaxed: torch.Tensor) -> torch.Tensor:
        return self.learned_scale.to(relaxed) * objective.relaxed_one_hot(relaxed)

    def compute_cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples and ``3 N`` evaluations."""
        return Cost(samples=self.num_samples, evaluations=3 * self.num_samples)


class RELAX(LearnedControlVariate):
    """RELAX (Grathwohl, Choi, Wu, Roeder and Duvenaud, "Backpropagation through the Void:
    Optimizing control variates for black-box gradient estimation", ICLR 2018), for
    categorical variables.

    The control variate is a user-given ``surrogate`` of the relaxed sample:
    ``c(z) = surrogate(softmax(z / temperature))``, its parameters and the temperature
    learned to minimise the variance. ``f`` itself is only evaluated on hard samples, so
    it need not accept relaxed input.

    With ``theta = log p`` (``[*B, D, K]``), Gumbel noise ``G`` and ``z = theta + G``, the
    sample is ``b = argmax_k z`` (exactly ``b ~ p``), and ``z~ = theta + G~`` is drawn from
    ``p(z | b)`` by the conditional Gumbel reparameterisation
    (:func:`catlog.gumbel_rao.conditional_gumbel`), a differentiable function of ``theta``
    for fixed uniforms. For a control variate ``c`` of the relaxed sample
    ``sigma(z) = softmax(z / temperature)``, the gradient of ``E[f(b)]`` w.r.t. the logits is

    ``g = 1/N sum_n [(f(b_n) - c(z~_n)) grad log p(b_n) + grad c(z_n) - grad c(z~_n)]``

    with ``grad log p(b) = onehot(b) - p`` per variable. Unbiased for any ``c``: splitting
    ``z`` into ``b`` and ``z`` given ``b``, ``grad E[c(z)] = E[c(z~) grad log p(b)] + E[grad c(z~)]``
    (the score of ``b`` plus the reparameterisation given ``b``), and ``grad E[c(z)] =
    E[grad c(z)]`` (``z = theta + G``), so the terms in ``c`` have mean zero and what is
    left is REINFORCE's ``E[f(b) grad log p(b)]``. The value is ``1/N sum_n f(b_n)``; the parameters ``f`` uses get
    the pathwise ``1/N sum_n grad f(b_n)``; ``c``'s parameters get nothing from it.

    Training the control variate. Its parameters (:meth:`parameters`: the log
    temperature and those of ``c``) should minimise the variance of ``g``, that is
    ``E[|g|^2]`` as ``E[g]`` does not depend on them. Each estimate with autograd on adds
    the single-sample gradient ``d |g|^2 / d phi`` (``g`` summed over the batch) into
    their ``.grad``, so an optimiser over them only has to step::

        est = catlog.RELAX(1, surrogate)
        optimiser = torch.optim.Adam([*model.parameters(), *est.parameters()], lr=1e-3)
        loss = est(f, model(inputs)).mean()
        optimiser.zero_grad(); loss.backward(); optimiser.step()   # model and est together

    Cost: ``N`` evaluations of ``f`` on hard samples, two of ``c`` on relaxed ones, a
    backward pass through ``c`` that keeps its graph (``create_graph``) and one more for
    the parameters' gradient. The learned parameters are CPU scalars of the default dtype, cast to
    the logits' dtype and device in each estimate (their gradients come back to them);
    an estimate calls ``torch.autograd.grad``, so ``torch.compile(fullgraph=True)`` does
    not trace it.

    Args:
        num_samples: ``N >= 1`` samples, each evaluated once by ``f``.
        surrogate: maps relaxed one-hot ``[M, *B, D, K]`` to ``[M, *B]``, differentiably
            (an ``nn.Module`` whose parameters are learned, or any callable).
        temperature: initial temperature, ``> 0`` (learned in log space).
        one_hot: hand ``f`` float one-hot samples instead of category indices.
        generator: the default generator of the samples (a call may override it).
        validate_args: check values (see :class:`~catlog.estimator.Estimator`); ``None`` follows the class default.
        chunk_size: evaluate ``f`` (and the control variate) on at most this many sample rows
            per call, to bound peak memory; ``None``: all in one call. The result does not
            depend on it.
    """

    def __init__(
        self,
        num_samples: int,
        surrogate: Callable[[torch.Tensor], torch.Tensor],
        temperature: float = 0.5,
        *,
        one_hot: bool = False,
        generator: torch.Generator | None = None,
        validate_args: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples,
            temperature,
            one_hot=one_hot,
            generator=generator,
            validate_args=validate_args,
            chunk_size=chunk_size,
        )
        if not callable(surrogate):
            raise ValueError(
                f"surrogate: expected a module or callable mapping [M, *B, D, K] to [M, *B], got {surrogate!r}"
            )
        self.surrogate = surrogate

    control_argument = "surrogate"

    def parameters(self) -> Iterator[nn.Parameter]:
        """The log temperature and the surrogate's parameters (if it is an ``nn.Module``)."""
        yield self.log_temperature
        if isinstance(self.surrogate, nn.Module):
            yield from self.surrogate.parameters()

    def _control(self, objective: Objective, relaxed: torch.Tensor) -> torch.Tensor:
        out = self.surrogate(relaxed)
        expected = relaxed.shape[:-2]
        if not isinstance(out, torch.Tensor) or out.shape != expected:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"surrogate: expected output of shape {tuple(expected)}, got {shape}")
        return out

    def compute_cost(self, num_variables: int, num_categories: int) -> Cost:
        """``N`` samples and ``N`` evaluations (the surrogate's ``2 N`` not counted)."""
        return Cost(samples=self.num_samples, evaluations=self.num_samples)
