"""``catlog plan``: open-loop (or closed-loop) planning in a deterministic gymnasium environment.

A plan is ``D`` (``--horizon``) actions from the environment's start state; the policy
is an autoregressive GRU over the plan (:mod:`catlog.experiments.policies`), conditioned
on the previous actions (``--condition actions``, open loop) or on the states they
reach (``--condition states``, closed loop), with the start state as its context. The
objective is the episode return of the plan, computed for every sampled and completed
plan at once by a tensor simulator built from gymnasium's transition table
(:mod:`catlog.experiments.gym_simulator`): FrozenLake's 1 at the goal, CliffWalking's
-1 per step and -100 at the cliff, Taxi's -1 per step, -10 per illegal action and +20
at the drop-off; ``--shaping w`` adds ``w`` times the plan's progress towards the goal
(a dense signal where the return is sparse). ``success_rate`` is the fraction of sampled
plans that reach the goal, ``return`` their mean episode return (without shaping).

Example: ``catlog plan --env FrozenLake-v1 --map 4x4 --estimator scater --time-budget 60 --out DIR``.
Training loop, options and files: :mod:`catlog.experiments.policy_training`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import catlog
from catlog.experiments import policy_training
from catlog.experiments.gym_simulator import ENVIRONMENTS, FROZEN_LAKE_MAPS, TabularSimulator, make_env
from catlog.experiments.options import Command, option
from catlog.experiments.policies import Inputs, SequencePolicy, previous_choices

# Default horizon per environment (and FrozenLake map): a little above the shortest successful plan.
HORIZONS: dict[str, int] = {"FrozenLake-v1:4x4": 10, "FrozenLake-v1:8x8": 20, "CliffWalking-v1": 20, "Taxi-v4": 20}
CONDITIONS: tuple[str, ...] = ("actions", "states")


@dataclass(frozen=True, kw_only=True)
class PlanConfig(policy_training.PolicyTrainingConfig):
    """Settings of ``catlog plan``: the environment, the horizon, what the policy reads, and training."""

    env: str = option("FrozenLake-v1", "gymnasium environment", choices=tuple(ENVIRONMENTS))
    map: str = option("4x4", "FrozenLake's map", choices=tuple(FROZEN_LAKE_MAPS))
    horizon: int | None = option(
        None, "plan length D", minimum=1, default_text=", ".join(f"{key} {value}" for key, value in HORIZONS.items())
    )
    condition: str = option("actions", "the policy reads previous actions or states", choices=CONDITIONS)
    starts: int = option(1, "start states planned for at once (Taxi has 300)", minimum=1)
    shaping: float = option(0.0, "weight of the progress towards the goal added to the return", minimum=0.0)

    @property
    def plan_length(self) -> int:
        """``--horizon``, or the environment's default from :data:`HORIZONS`."""
        key = f"{self.env}:{self.map}" if self.env.startswith("FrozenLake") else self.env
        return self.horizon if self.horizon is not None else HORIZONS[key]


class PlanningTask:
    """Plans of ``D = horizon`` actions in ``simulator`` from ``starts: LongTensor[B]`` (one problem per
    start state), the policy reading previous actions or states (``condition``), returns in ``dtype``,
    ``shaping`` the weight ``w`` of the progress term of :meth:`reward`."""

    def __init__(
        self,
        simulator: TabularSimulator,
        starts: torch.Tensor,
        horizon: int,
        condition: str,
        dtype: torch.dtype,
        shaping: float = 0.0,
    ) -> None:
        self.simulator, self.starts = simulator, starts
        self.num_variables, self.num_categories = horizon, simulator.num_actions
        self.condition, self.shaping = condition, shaping
        self.context = torch.nn.functional.one_hot(starts, simulator.num_states).to(dtype)
        distances = simulator.distances()
        # states that cannot reach the goal (holes) count as one step further than the farthest that can
        self.distances = distances.clamp(max=distances[distances <= simulator.num_states].max() + 1).to(dtype)

    def _inputs(self) -> Inputs:
        if self.condition == "actions":
            return previous_choices(self.num_categories)
        return lambda x, d: self.simulator.states(self.starts, x[..., :d])

    def policy(self, hidden: int) -> SequencePolicy:
        """A GRU reading previous actions (and a start token) or visited states; the start state is its context."""
        inputs = self.num_categories + 1 if self.condition == "actions" else self.simulator.num_states
        return SequencePolicy(inputs, self.num_categories, self.simulator.num_states, hidden)

    def distribution(self, policy: torch.nn.Module) -> catlog.Autoregressive:
        """The policy's plans, batch ``[B]`` (start states)."""
        assert isinstance(policy, SequencePolicy)
        return policy.distribution(self.context, self.num_variables, self._inputs())

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """The objective of plans ``x: LongTensor[M, B, D]``: ``[M, B]``.

        The episode return, plus ``w (dist(s_0) - dist(s_D)) / dist(s_0)`` with ``w > 0``
        (``--shaping``): the progress towards the goal, ``dist`` the fewest steps to it
        (:meth:`TabularSimulator.distances`; holes one step beyond the farthest state),
        a dense signal where the return is sparse (FrozenLake 8x8).
        """
        rollout = self.simulator.rollout(self.starts, x)
        objective = rollout.rewards.sum(-1).to(self.context.dtype)
        if self.shaping:
            start = self.distances[self.starts]
            objective = objective + self.shaping * (start - self.distances[rollout.states[..., -1]]) / start
        return objective

    def evaluate(self, policy: torch.nn.Module, samples: int, generator: torch.Generator) -> dict[str, float]:
        """``success_rate`` and mean ``return`` of ``samples`` fresh plans per start state."""
        plans = self.distribution(policy).sample((samples,), generator=generator)
        rollout = self.simulator.rollout(self.starts, plans)
        return {
            "success_rate": float(rollout.success.double().mean()),
            "return": float(rollout.rewards.double().sum(-1).mean()),
        }


def make_task(config: PlanConfig) -> PlanningTask:
    """The planning task of ``config``: its environment, ``--starts`` start states drawn with ``--seed``."""
    simulator = TabularSimulator.from_env(make_env(config.env, config.map), config.torch_dtype)
    order = torch.randperm(len(simulator.start_states), generator=torch.Generator().manual_seed(config.seed))
    starts = simulator.start_states[order[: config.starts]]
    return PlanningTask(simulator, starts, config.plan_length, config.condition, config.torch_dtype, config.shaping)


COMMAND = Command(
    "plan",
    help="train a planning policy in a deterministic gymnasium environment",
    description=__doc__ or "",
    config=PlanConfig,
    run=lambda config: policy_training.run(config, "plan", make_task),
)
