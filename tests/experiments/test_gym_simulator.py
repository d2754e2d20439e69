"""The tensor simulators against gymnasium's own ``step`` on random action sequences."""

from __future__ import annotations

import pytest
import torch

gymnasium = pytest.importorskip("gymnasium")

from catlog.experiments.gym_simulator import TabularSimulator, make_env  # noqa: E402

ENVIRONMENTS = [("FrozenLake-v1", "4x4"), ("FrozenLake-v1", "8x8"), ("CliffWalking-v1", "4x4"), ("Taxi-v4", "4x4")]
HORIZON, SEQUENCES = 40, 30


@pytest.mark.parametrize(("env_id", "map_name"), ENVIRONMENTS)
def test_random_action_sequences_replay_as_in_gymnasium(env_id: str, map_name: str) -> None:
    env = make_env(env_id, map_name)
    simulator = TabularSimulator.from_env(env)
    generator = torch.Generator().manual_seed(1)
    actions = torch.randint(simulator.num_actions, (SEQUENCES, HORIZON), generator=generator)
    starts = torch.tensor([env.reset(seed=seed)[0] for seed in range(SEQUENCES)])
    rollout = simulator.rollout(starts, actions)
    ended_somewhere = 0
    for n in range(SEQUENCES):
        state, _ = env.reset(seed=n)
        assert rollout.states[n, 0] == state
        episode_return, ended = 0.0, False
        for t in range(HORIZON):
            state, reward, terminated, truncated, _ = env.step(int(actions[n, t]))
            assert (int(rollout.states[n, t + 1]), float(rollout.rewards[n, t]), bool(rollout.terminated[n, t])) == (
                state,
                reward,
                terminated,
            ), f"sequence {n}, step {t}"
            episode_return += reward
            if terminated or truncated:
                ended = terminated
                break
        # after the end of the episode the simulator stays put and pays nothing
        assert bool((rollout.states[n, t + 1 :] == state).all()) and bool((rollout.rewards[n, t + 1 :] == 0).all())
        assert float(rollout.rewards[n].sum()) == pytest.approx(episode_return)
        assert bool(rollout.success[n]) == (ended and reward == simulator.reward[simulator.goal].max())
        ended_somewhere += ended
    if env_id.startswith("FrozenLake"):  # random plans end in holes: the check above saw terminations
        assert ended_somewhere > 0


def test_batched_rollouts_match_one_by_one_and_broadcast_the_start() -> None:
    simulator = TabularSimulator.from_env(make_env("FrozenLake-v1", "8x8"))
    actions = torch.randint(4, (3, 5, 16), generator=torch.Generator().manual_seed(0))
    batched = simulator.rollout(torch.tensor(0), actions).rewards.sum(-1)
    single = torch.stack([simulator.rollout(torch.tensor(0), row).rewards.sum(-1) for row in actions.flatten(0, 1)])
    assert torch.equal(batched.flatten(), single)


def test_the_goal_is_reached_by_a_shortest_plan_and_holes_are_not_goals() -> None:
    simulator = TabularSimulator.from_env(make_env("FrozenLake-v1", "4x4"))
    down, right = 1, 2
    plan = torch.tensor([down, down, right, right, down, right])  # S F F F / F H F H / F F F H / H F F G
    rollout = simulator.rollout(torch.tensor(0), plan)
    assert bool(rollout.success) and float(rollout.rewards.sum()) == 1.0
    into_hole = simulator.rollout(torch.tensor(0), torch.tensor([right, down]))
    assert bool(into_hole.terminated[..., 1]) and not bool(into_hole.success)


def test_the_cliff_penalty_is_part_of_the_return_and_the_edge_path_reaches_the_goal() -> None:
    simulator = TabularSimulator.from_env(make_env("CliffWalking-v1"))
    start, (up, right, down) = simulator.start_states[0], (0, 1, 2)
    assert float(simulator.rollout(start, torch.tensor([right])).rewards.sum(-1)) == -100.0
    rollout = simulator.rollout(start, torch.tensor([up, *[right] * 11, down, up]))
    assert bool(rollout.success) and bool(rollout.terminated[12]) and float(rollout.rewards.sum()) == -13.0


def test_slippery_environments_are_refused() -> None:
    with pytest.raises(ValueError, match="^env: expected deterministic transitions"):
        TabularSimulator.from_env(gymnasium.make("FrozenLake-v1", is_slippery=True))


def test_unknown_environments_and_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="^env: expected one of FrozenLake-v1"):
        make_env("CartPole-v1")
    with pytest.raises(ValueError, match="^map: expected one of 4x4, 8x8, got '5x5'"):
        make_env("FrozenLake-v1", "5x5")


@pytest.mark.parametrize(
    ("env_id", "map_name", "shortest"),
    [("FrozenLake-v1", "4x4", 6), ("FrozenLake-v1", "8x8", 14), ("CliffWalking-v1", "4x4", 13)],
)
def test_distances_are_the_shortest_successful_plans(env_id: str, map_name: str, shortest: int) -> None:
    simulator = TabularSimulator.from_env(make_env(env_id, map_name))
    distances = simulator.distances()
    assert int(distances[simulator.start_states[0]]) == shortest
    # one step along a best action lowers the distance by one, from every state that can reach the goal
    reachable = (distances > 0) & (distances <= simulator.num_states)
    after = torch.where(simulator.goal, 0, distances[simulator.next_state]).amin(-1)
    assert torch.equal(after[reachable], distances[reachable] - 1)
