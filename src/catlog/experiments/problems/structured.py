"""Structured problems: a GRU policy over ``D`` choices of ``K``, as ``catlog plan`` and ``catlog generate`` train.

The policy is :class:`~catlog.experiments.policies.SequencePolicy` reading its previous
choices (open loop), a ``catlog.Autoregressive`` over ``D`` choices for a batch of ``B``
contexts. The gradient is that of ``mean_B E_p[f]`` with respect to the policy's weights,
and the exact one enumerates the ``K^D`` sequences of every context (:class:`catlog.Exact`,
float64). Two rewards, both ``1`` or ``0``:

- :func:`frozenlake`: a plan of ``D`` actions on FrozenLake 4x4 (``is_slippery=False``)
  from its start state, ``f`` the episode return, 1 at the goal
  (:mod:`~catlog.experiments.gym_simulator`);
- :func:`arithmetic`: an expression of ``D`` tokens over the digits, ``+ - *`` and an end
  token that must evaluate to its target, given to the policy as its decimal digits
  (:mod:`~catlog.experiments.verifiers`).

Each is measured untrained (``steps = 0``: the policy as initialised from ``seed``) or
trained: Adam steps (lr 1e-2) of ``SCateR(4)`` from that initialisation, in float64, until the
mean reward of :data:`SUCCESS_SAMPLES` sampled sequences per context (the same draws at every
check, made every 5 steps) reaches :data:`TRAINED_SUCCESS`, or ``steps`` are done: deterministic
for a seed (FrozenLake takes 35-55 steps, arithmetic 30-40 on seeds 0-3), a policy that
succeeds sometimes. SCateR, REINFORCE, RLOO and GRPO
apply; neither reward has a relaxation.
"""

from __future__ import annotations

import torch

import catlog
from catlog.experiments.gym_simulator import TabularSimulator, make_env
from catlog.experiments.policies import SequencePolicy, previous_choices
from catlog.experiments.problems.problem import Objective, Problem
from catlog.experiments.verifiers import ARITHMETIC_TOKENS, arithmetic_reward

TRAINED_SUCCESS = 0.2
"""The mean reward of sampled sequences at which training stops."""
SUCCESS_SAMPLES = 1000
LEARNING_RATE = 1e-2
TRAINING_SAMPLES = 4
CHECK_EVERY = 5
HIDDEN = 16
"""The GRU's width (``catlog plan`` and ``catlog generate`` default to 64; 16 keeps ``K^D`` enumerable)."""
TARGETS = (6, 18, 30, 42)
"""The arithmetic problem's targets, one context each."""


def policy_problem(
    name: str,
    title: str,
    f: Objective,
    context: torch.Tensor,
    num_variables: int,
    num_categories: int,
    steps: int,
    seed: int,
    dtype: torch.dtype,
) -> Problem:
    """The policy over ``D = num_variables`` choices of ``K`` for ``context: [B, C]`` against a reward
    ``f: LongTensor[M, B, D] -> [M, B]``, trained by at most ``steps`` steps (see the module docstring).

    The training and the exact gradient are in float64 on ``context``'s device; the estimates in ``dtype``.
    """
    torch.manual_seed(seed)
    policy = SequencePolicy(num_categories + 1, num_categories, context.shape[-1], HIDDEN).to(context.device)
    inputs = previous_choices(num_categories)

    def expected(estimator: catlog.Estimator, generator: torch.Generator | None) -> torch.Tensor:
        """``estimator``'s estimate of ``mean_B E_p[f]`` at the policy's current dtype."""
        dtype = policy.head.weight.dtype
        distribution = policy.distribution(context.to(dtype), num_variables, inputs)
        return estimator(lambda x: f(x).to(dtype), distribution, generator=generator).mean()

    policy.double()
    optimiser = torch.optim.Adam(policy.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator(context.device).manual_seed(seed + 1)
    done = 0
    while True:
        with torch.no_grad():  # REINFORCE's value is the mean of f over its samples
            success = float(
                expected(catlog.REINFORCE(SUCCESS_SAMPLES), torch.Generator(context.device).manual_seed(seed))
            )
        if success >= TRAINED_SUCCESS or done >= steps:
            break
        for _ in range(min(CHECK_EVERY, steps - done)):
            optimiser.zero_grad()
            torch.autograd.backward(-expected(catlog.SCateR(TRAINING_SAMPLES), generator))
            optimiser.step()
            done += 1
    exact = torch.autograd.grad(expected(catlog.Exact(), None), tuple(policy.parameters()))
    policy.to(dtype)
    origin = f"{done} SCateR({TRAINING_SAMPLES}) steps" if steps else "untrained"
    return Problem(
        name,
        f"{title}, GRU {HIDDEN}, {origin} (sampled success {success:.2f})",
        num_variables,
        num_categories,
        expected,
        tuple(policy.parameters()),
        f,
        (context.shape[0],),
        autoregressive=True,
        exact=torch.cat([gradient.flatten() for gradient in exact]),
    )


def frozenlake(steps: int, seed: int, device: torch.device, dtype: torch.dtype, horizon: int = 7) -> Problem:
    """Plans of ``horizon`` actions (``K = 4``) on FrozenLake 4x4, whose shortest successful plan has 6."""
    simulator = TabularSimulator.from_env(make_env("FrozenLake-v1", "4x4"), torch.float64).to(device)
    start = simulator.start_states
    context = torch.nn.functional.one_hot(start, simulator.num_states).double()
    return policy_problem(
        "frozenlake-trained" if steps else "frozenlake",
        f"FrozenLake 4x4 plan, D = {horizon}, K = 4",
        lambda x: simulator.rollout(start, x).rewards.sum(-1),
        context,
        horizon,
        simulator.num_actions,
        steps,
        seed,
        dtype,
    )


def arithmetic(steps: int, seed: int, device: torch.device, dtype: torch.dtype, length: int = 4) -> Problem:
    """Expressions of ``length`` tokens (``K = 14``) for the targets :data:`TARGETS`."""
    targets = torch.tensor(TARGETS, device=device)
    digits = targets[:, None] // 10 ** torch.arange(3, device=device) % 10
    return policy_problem(
        "arithmetic-trained" if steps else "arithmetic",
        f"arithmetic to targets {', '.join(map(str, TARGETS))}, D = {length}, K = {ARITHMETIC_TOKENS}",
        lambda x: arithmetic_reward(x, targets),
        torch.nn.functional.one_hot(digits, 10).flatten(1).double(),
        length,
        ARITHMETIC_TOKENS,
        steps,
        seed,
        dtype,
    )
