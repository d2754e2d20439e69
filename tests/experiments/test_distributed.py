"""A real 2-process gloo group: distributed steps equal single-process steps on the same batch and samples."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import catlog
from catlog.experiments import distributed
from catlog.experiments.distributed import DistributedContext

SEED = 3
EXAMPLES, BATCH, FEATURES, VARIABLES, CATEGORIES = 13, 4, 5, 3, 4
WORLD = 2


class Autoencoder(nn.Module):
    """A discrete autoencoder whose ``forward`` is the whole loss: encoder logits ``[b, D, K]``
    and an objective ``f`` with its own parameters (the decoder), estimated by IndeCateR."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(FEATURES, VARIABLES * CATEGORIES)
        self.decoder = nn.Linear(VARIABLES * CATEGORIES, FEATURES)
        self.estimator = catlog.IndeCateR(2, one_hot=True)

    def forward(self, inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mean over the batch ``inputs: [b, F]`` of the estimated squared reconstruction error."""
        logits = self.encoder(inputs).view(-1, VARIABLES, CATEGORIES)

        def f(x: torch.Tensor) -> torch.Tensor:
            return (self.decoder(x.flatten(-2)) - inputs).pow(2).sum(-1)

        return self.estimator(f, logits, generator=generator).mean()


def dataset() -> torch.Tensor:
    return torch.randn(EXAMPLES, FEATURES, generator=torch.Generator().manual_seed(99), dtype=torch.float64)


def model_for(init_seed: int) -> Autoencoder:
    torch.manual_seed(init_seed)
    return Autoencoder().double()


def train(model: nn.Module, ctx: DistributedContext, sync: str | None, steps: int = 2) -> None:
    """SGD over the first ``steps`` of this rank's shard; ``sync`` names the gradient averaging."""
    data = dataset()
    generator = distributed.rank_generator(SEED, ctx)
    for batch in distributed.shard(EXAMPLES, BATCH, ctx, SEED, epoch=0)[:steps]:
        model.zero_grad()
        (model(data[batch.indices], generator) * batch.weight).backward()
        if sync == "allreduce":
            distributed.average_gradients(model.parameters(), ctx)
        sgd_step(model)


def sgd_step(model: nn.Module, lr: float = 0.1) -> None:
    """``p -= lr * grad`` (torch.optim would import torch._dynamo: seconds per process)."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= lr * parameter.grad


def sampled_categories(ctx: DistributedContext) -> torch.Tensor:
    """The categories IndeCateR samples with this rank's generator on fixed uniform logits."""
    seen = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x.sum(-1).double()

    catlog.IndeCateR(4)(f, torch.zeros(6, VARIABLES, CATEGORIES), generator=distributed.rank_generator(SEED, ctx))
    return seen[0]


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in distributed.unwrap(model).parameters()])


def worker(rank: int, port: int, out: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group("cpu", timeout=datetime.timedelta(seconds=120)) as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main) == (rank, WORLD, rank == 0)
        # Different initial parameters per rank: DDP and broadcast_parameters must equalise them.
        ddp = distributed.wrap_model(model_for(SEED + rank), ctx)
        train(ddp, ctx, sync=None)
        plain = model_for(SEED + rank)
        distributed.broadcast_parameters(plain, ctx)
        train(plain, ctx, sync="allreduce")
        metric = distributed.all_reduce_mean(float(rank + 1), ctx, weight=float(rank + 1))
        metrics = distributed.all_reduce_means({"a": float(rank), "b": 2.0 * rank}, ctx, weight=float(rank + 1))
        results = {
            "ddp": flat_parameters(ddp),
            "allreduce": flat_parameters(plain),
            "samples": sampled_categories(ctx),
            "metric": metric,
            "metrics": metrics,
            "broadcast": distributed.broadcast_object(f"folder of rank {rank}", ctx),
            "gathered": distributed.all_gather_object({"rank": rank}, ctx),
        }
        distributed.main_only(ctx)(torch.save)({"written_by": rank}, out / "main_only.pt")
        torch.save(results, out / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reference_step(ranks: list[int], steps: int = 2) -> torch.Tensor:
    """One process, same global batches and samples: each rank's part evaluated with that rank's
    generator, losses weighted and averaged as DDP averages gradients."""
    model = model_for(SEED)
    data = dataset()
    contexts = [DistributedContext(rank=r, world_size=WORLD) for r in ranks]
    generators = [distributed.rank_generator(SEED, ctx) for ctx in contexts]
    shards = [distributed.shard(EXAMPLES, BATCH, ctx, SEED, epoch=0) for ctx in contexts]
    for step in range(steps):
        model.zero_grad()
        for batches, generator in zip(shards, generators):
            batch = batches[step]
            (model(data[batch.indices], generator) * batch.weight / WORLD).backward()
        sgd_step(model)
    return flat_parameters(model)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(worker, args=(free_port(), out), nprocs=WORLD, join=True, start_method="spawn")
    assert torch.load(out / "main_only.pt") == {"written_by": 0}
    return [torch.load(out / f"rank{rank}.pt") for rank in range(WORLD)]


@pytest.mark.parametrize("sync", ["ddp", "allreduce"])
def test_distributed_steps_equal_single_process_steps(two_ranks: list[dict], sync: str) -> None:
    expected = reference_step(list(range(WORLD)))
    for result in two_ranks:
        torch.testing.assert_close(result[sync], expected, rtol=1e-10, atol=1e-12)
    # The check has teeth: rank 0's half alone moves the parameters elsewhere.
    assert not torch.allclose(expected, reference_step_half_only())


def reference_step_half_only() -> torch.Tensor:
    """Rank 0's batches alone, unweighted: what a rank would reach without gradient averaging."""
    model = model_for(SEED)
    train(model, DistributedContext(rank=0, world_size=WORLD), sync=None)
    return flat_parameters(model)


def test_estimator_randomness_differs_across_ranks(two_ranks: list[dict]) -> None:
    first, second = (result["samples"] for result in two_ranks)
    assert first.shape == second.shape == (4, 6, VARIABLES)
    assert not torch.equal(first, second)
    again = sampled_categories(DistributedContext(rank=1, world_size=WORLD))
    assert torch.equal(second, again), "rank streams must be reproducible from the seed"


def test_broadcast_and_gather_objects(two_ranks: list[dict]) -> None:
    assert [result["broadcast"] for result in two_ranks] == ["folder of rank 0"] * WORLD
    assert [result["gathered"] for result in two_ranks] == [[{"rank": 0}, {"rank": 1}]] * WORLD


def test_all_reduce_mean_weights_ranks(two_ranks: list[dict]) -> None:
    # rank r reports r + 1 with weight r + 1: (1*1 + 2*2) / (1 + 2)
    assert [result["metric"] for result in two_ranks] == [pytest.approx(5 / 3)] * WORLD
    # a: (0*1 + 1*2) / 3, b: (0*1 + 2*2) / 3
    expected = {"a": pytest.approx(2 / 3), "b": pytest.approx(4 / 3)}
    assert [result["metrics"] for result in two_ranks] == [expected] * WORLD


def test_single_process_context_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup("cpu")
    assert ctx == DistributedContext() and ctx.is_main and not ctx.is_distributed
    model = nn.Linear(2, 2)
    assert distributed.wrap_model(model, ctx) is model
    assert distributed.all_reduce_mean(torch.tensor(2.5), ctx) == 2.5
    assert distributed.all_reduce_means({"a": 1, "b": 2.5}, ctx, weight=3) == {"a": 1.0, "b": 2.5}
    assert distributed.broadcast_object("x", ctx) == "x"
    assert distributed.all_gather_object("x", ctx) == ["x"]
    generator = distributed.rank_generator(7, ctx)
    assert torch.equal(torch.rand(5, generator=generator), torch.rand(5, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("fails", [False, True])
def test_process_group_waits_for_every_rank_only_on_a_clean_exit(monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    calls: list[str] = []
    monkeypatch.setattr(distributed, "setup", lambda *args: calls.append("setup") or DistributedContext(0, WORLD))
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed, "teardown", lambda: calls.append("teardown"))
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with distributed.process_group("cpu") as ctx:
            assert ctx.is_distributed
            if fails:
                raise RuntimeError("a rank fails")
    assert calls == ["setup", "teardown"] if fails else ["setup", "barrier", "teardown"]


def test_setup_rejects_inconsistent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK: expected an integer"):
        distributed.setup("cpu")


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize(("examples", "batch"), [(13, 4), (9, 2), (7, 7), (24, 4)])
def test_shard_keeps_every_example_once_in_equal_step_counts(world: int, examples: int, batch: int) -> None:
    shards = [distributed.shard(examples, batch, DistributedContext(r, world), seed=1, epoch=2) for r in range(world)]
    assert len({len(batches) for batches in shards}) == 1
    indices = torch.cat([b.indices for batches in shards for b in batches])
    assert torch.equal(indices.sort().values, torch.arange(examples))
    for step in zip(*shards):
        sizes = [b.indices.numel() for b in step]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        assert all(b.global_size == sum(sizes) for b in step)
        # Weighted per-rank means averaged over ranks = the global mean.
        assert sum(b.weight for b in step) / world == pytest.approx(1.0)
    if world == 1:
        assert [b.indices.numel() for b in shards[0]][:-1] == [batch] * (len(shards[0]) - 1)


def test_shard_permutation_depends_on_seed_and_epoch() -> None:
    ctx = DistributedContext()
    first = distributed.shard(50, 50, ctx, seed=0, epoch=0)[0].indices
    assert torch.equal(first, distributed.shard(50, 50, ctx, seed=0, epoch=0)[0].indices)
    assert not torch.equal(first, distributed.shard(50, 50, ctx, seed=0, epoch=1)[0].indices)
    assert not torch.equal(first, distributed.shard(50, 50, ctx, seed=1, epoch=0)[0].indices)


def test_shard_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        distributed.shard(10, 0, DistributedContext(), seed=0, epoch=0)
    with pytest.raises(ValueError, match="num_examples"):
        distributed.shard(1, 4, DistributedContext(0, 2), seed=0, epoch=0)
