"""Deterministic tabular gymnasium environments as batched tensor simulators.

When every entry of ``env.unwrapped.P[s][a] = [(probability, next, reward, terminated)]`` is one
certain transition (FrozenLake with ``is_slippery=False``, CliffWalking, Taxi), the dynamics are
tables ``next[S, A]``, ``reward[S, A]``, ``terminal[S, A]``, and any batch of action sequences
rolls out with one gather per time step (SCateR's ``N * D * K`` completions included). After a
terminating transition the state stays and rewards are 0; the planning objective is the return
``sum_t r_t`` over the horizon, with the environment's own penalties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

# The environments `catlog plan` knows, with the keyword arguments of gymnasium.make
# that make them deterministic; FrozenLake also takes a map (see make_env).
ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "FrozenLake-v1": {"is_slippery": False},
    "CliffWalking-v1": {},
    "Taxi-v4": {},
}
FROZEN_LAKE_MAPS: tuple[str, ...] = ("4x4", "8x8")


def make_env(env_id: str, map_name: str = "4x4") -> Any:
    """The deterministic gymnasium environment ``env_id`` of :data:`ENVIRONMENTS` (FrozenLake on the map
    ``map_name``); a ``ValueError`` for an unknown environment or map, or without gymnasium."""
    try:
        import gymnasium
    except ImportError as error:
        raise ValueError(
            "env: expected gymnasium to be installed (part of the experiments extra), got an ImportError; "
            "install it with: pip install 'catlog[experiments]'"
        ) from error
    if env_id not in ENVIRONMENTS:
        raise ValueError(f"env: expected one of {', '.join(ENVIRONMENTS)}, got {env_id!r}")
    kwargs = dict(ENVIRONMENTS[env_id])
    if env_id.startswith("FrozenLake"):
        if map_name not in FROZEN_LAKE_MAPS:
            raise ValueError(f"map: expected one of {', '.join(FROZEN_LAKE_MAPS)}, got {map_name!r}")
        kwargs["map_name"] = map_name
    return gymnasium.make(env_id, **kwargs)


class Rollout(NamedTuple):
    """The trajectories of a batch of action sequences.

    Attributes:
        states: ``LongTensor[*S, D + 1]``: ``s_0`` (the start) to ``s_D``.
        rewards: ``[*S, D]``: ``r_t`` of step ``t`` (0 once the episode is over).
        terminated: ``BoolTensor[*S, D]``: step ``t`` ended the episode.
        success: ``BoolTensor[*S]``: the episode ended in a goal within the horizon.
    """

    states: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    success: torch.Tensor


@dataclass(frozen=True)
class TabularSimulator:
    """A deterministic tabular environment: ``s_{t+1} = next[s_t, a_t]``, ``r_t = reward[s_t, a_t]``.

    Attributes:
        next_state: ``LongTensor[S, A]``.
        reward: ``[S, A]``.
        terminal: ``BoolTensor[S, A]``: the transition ends the episode.
        goal: ``BoolTensor[S, A]``: the transition ends the episode in success (the
            terminating transitions of the highest reward: FrozenLake's goal, not its holes).
        start_states: ``LongTensor[S0]``: the states the environment may start in.
    """

    next_state: torch.Tensor
    reward: torch.Tensor
    terminal: torch.Tensor
    goal: torch.Tensor
    start_states: torch.Tensor

    @classmethod
    def from_env(cls, env: Any, dtype: torch.dtype = torch.float32) -> TabularSimulator:
        """The simulator of ``env``; a ``ValueError`` if a state-action pair has several transitions."""
        table = env.unwrapped.P
        num_states, num_actions = len(table), len(table[0])
        entries = [table[s][a] for s in range(num_states) for a in range(num_actions)]
        random = [(s_a // num_actions, s_a % num_actions) for s_a, entry in enumerate(entries) if len(entry) != 1]
        if random:
            raise ValueError(
                f"env: expected deterministic transitions (one per state and action), got several at "
                f"(state, action) = {random[0]} and {len(random) - 1} more; is the environment slippery?"
            )
        _, next_state, reward, terminal = zip(*(entry[0] for entry in entries))
        shape = (num_states, num_actions)
        rewards = torch.tensor([float(r) for r in reward], dtype=dtype).view(shape)
        terminals = torch.tensor([bool(t) for t in terminal]).view(shape)
        best = rewards[terminals].max() if bool(terminals.any()) else rewards.new_tensor(0.0)
        initial = torch.as_tensor(env.unwrapped.initial_state_distrib)
        return cls(
            next_state=torch.tensor([int(s) for s in next_state]).view(shape),
            reward=rewards,
            terminal=terminals,
            goal=terminals & (rewards == best),
            start_states=torch.nonzero(initial > 0).flatten(),
        )

    @property
    def num_states(self) -> int:
        """``S``."""
        return int(self.next_state.shape[0])

    @property
    def num_actions(self) -> int:
        """``A``."""
        return int(self.next_state.shape[1])

    def to(self, device: torch.device | str) -> TabularSimulator:
        """The same simulator with its tables on ``device``."""
        return TabularSimulator(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))

    def rollout(self, start: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """Roll out ``actions: LongTensor[*S, D]`` from ``start: LongTensor[*S]`` (broadcast against ``*S``).

        One gather per time step ``t``: ``s_{t+1} = next[s_t, a_t]`` until a terminating
        transition, then ``s_{t+1} = s_t`` with reward 0.
        """
        state = start.expand(actions.shape[:-1])
        done = torch.zeros_like(state, dtype=torch.bool)
        success = torch.zeros_like(done)
        states, rewards, terminated = [state], [], []
        for t in range(actions.shape[-1]):
            action = actions[..., t]
            ends = self.terminal[state, action] & ~done
            rewards.append(self.reward[state, action].masked_fill(done, 0.0))
            success = success | (ends & self.goal[state, action])
            state = torch.where(done, state, self.next_state[state, action])
            done = done | ends
            states.append(state)
            terminated.append(ends)
        stack = torch.stack
        empty = actions.new_zeros(actions.shape, dtype=self.reward.dtype)
        return Rollout(
            stack(states, -1),
            stack(rewards, -1) if rewards else empty,
            stack(terminated, -1) if terminated else empty.bool(),
            success,
        )

    def distances(self) -> torch.Tensor:
        """The fewest steps from each state to a goal: ``LongTensor[S]``, 0 at the goal states.

        Bellman iterations ``dist(s) = min_a [1 if goal(s, a) else 1 + dist(next[s, a])]``,
        terminating transitions that miss the goal excluded; states that cannot reach a goal
        (FrozenLake's holes) keep ``S + 1``.
        """
        unreachable = self.num_states + 1
        goal_states = self.next_state[self.goal]
        dist = torch.full((self.num_states,), unreachable, dtype=torch.long, device=self.next_state.device)
        dist[goal_states] = 0
        for _ in range(self.num_states):
            through = torch.where(self.terminal, unreachable, 1 + dist[self.next_state])
            steps = torch.where(self.goal, 1, through).amin(-1).clamp(max=unreachable).index_fill(0, goal_states, 0)
            if torch.equal(steps, dist):
                break
            dist = steps
        return dist

    def states(self, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``s_0 .. s_D``: ``LongTensor[*S, D + 1]`` for ``actions: LongTensor[*S, D]`` from ``start``."""
        return self.rollout(start, actions).states
