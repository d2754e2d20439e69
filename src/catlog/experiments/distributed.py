"""Data-parallel training with ``torch.distributed``: one process per device, launched by ``torchrun``.

Global batch semantics: with world size ``W`` and per-rank batch ``b``, one step draws a
global batch of ``W * b`` examples (:func:`shard`), each rank multiplies its mean loss by
:attr:`Batch.weight` and the gradients are averaged over ranks, so that the result is the
gradient of the mean loss over the global batch, the last smaller one included. Without
``torchrun`` (``WORLD_SIZE`` unset or 1) every function is a cheap no-op, so the same code
runs single-process. Backends: ``gloo`` on CPU, ``nccl`` on CUDA (``cuda:LOCAL_RANK``).
The API and its use are in docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its global ``rank`` of ``world_size`` (``W``), its ``local_rank`` on
    its node (which picks the GPU) and the ``device`` it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes logs, checkpoints and plots."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer in the environment, got {raw!r}") from None


def setup(
    device: str | torch.device = "cpu", backend: str | None = None, timeout: datetime.timedelta | None = None
) -> DistributedContext:
    """Join the process group that torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` describe, or
    return a single-process context.

    With ``WORLD_SIZE > 1`` the group is initialised once (``env://``), with ``backend`` or else
    ``nccl`` for a CUDA ``device`` and ``gloo`` otherwise; on CUDA each process takes
    ``cuda:LOCAL_RANK``. ``timeout`` bounds collectives (``None``: torch's default).
    """
    requested = torch.device(device)
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ValueError(
            "RANK, WORLD_SIZE, LOCAL_RANK: expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, "
            f"got {rank}, {world_size}, {local_rank}"
        )
    if world_size == 1:
        return DistributedContext(device=requested)
    if requested.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: expected an available device, got {device!r} but CUDA is not available")
        requested = torch.device("cuda", local_rank)
        torch.cuda.set_device(requested)
    if not dist.is_initialized():
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(
            backend or ("nccl" if requested.type == "cuda" else "gloo"),
            init_method="env://",
            rank=rank,
            world_size=world_size,
            **options,
        )
    return DistributedContext(rank, world_size, local_rank, requested)


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(
    device: str | torch.device = "cpu", backend: str | None = None, timeout: datetime.timedelta | None = None
) -> Iterator[DistributedContext]:
    """:func:`setup` on entry, :func:`teardown` on exit; the way a command holds a process group.

    On a clean exit every rank first waits at a barrier: a rank that finishes first could
    otherwise shut its interpreter down while gloo still releases the tensors of its last
    collective, and abort. After an exception there is no barrier (other ranks may never reach it).
    """
    ctx = setup(device, backend, timeout)
    try:
        yield ctx
        barrier(ctx)
    finally:
        teardown()


def wrap_model(model: nn.Module, ctx: DistributedContext, **ddp_options: Any) -> nn.Module:
    """``DistributedDataParallel(model, **ddp_options)`` when distributed, else ``model`` itself.

    Only parameters used inside the wrapped module's ``forward`` get averaged gradients; for a
    loss that is not one call of a module use :func:`average_gradients` instead.
    """
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_options)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper, or ``model`` itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def broadcast_parameters(module: nn.Module, ctx: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP does when it wraps)."""
    if ctx.is_distributed:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[torch.Tensor], ctx: DistributedContext) -> None:
    """Replace every ``.grad`` by its mean over ranks, in place, between ``backward`` and ``step``.

    Every rank passes the same parameters in the same order; a missing gradient counts as zero.
    """
    if not ctx.is_distributed:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(ctx.world_size)


class Batch(NamedTuple):
    """This rank's part of one global batch of ``global_size`` (``g``) examples: its ``indices``
    ``LongTensor[b_r]`` (``b_r >= 1``) and ``weight = W * b_r / g``, the factor for its mean loss."""

    indices: torch.Tensor
    weight: float
    global_size: int


def shard(num_examples: int, batch_size: int, ctx: DistributedContext, seed: int, epoch: int) -> list[Batch]:
    """This rank's batches for one epoch: every example once, the same number of steps on every rank.

    The examples ``0..n-1`` (``n >= W``) are shuffled by a permutation drawn from ``(seed, epoch)``
    and cut into global batches of ``W * batch_size``, each split into ``W`` contiguous parts whose
    sizes differ by at most one. A last global batch of fewer than ``W`` examples joins the one
    before. With ``W = 1``: a shuffled split into batches of ``batch_size``, the last one smaller.
    """
    world = ctx.world_size
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if num_examples < world:
        raise ValueError(f"num_examples: expected at least the world size {world}, got {num_examples}")
    generator = torch.Generator().manual_seed(_derive_seed(seed, ("shard", epoch)))
    order = torch.randperm(num_examples, generator=generator)
    bounds = list(range(0, num_examples, world * batch_size)) + [num_examples]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < world:
        del bounds[-2]
    batches = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        part = order[start:stop].tensor_split(world)[ctx.rank]
        batches.append(Batch(part, world * part.numel() / (stop - start), stop - start))
    return batches


def _derive_seed(seed: int, key: tuple[Any, ...]) -> int:
    """A 63-bit seed from ``seed`` and a key of small integers or strings, reproducibly."""
    words = [word if isinstance(word, int) else int.from_bytes(word.encode(), "little") for word in key]
    return int(np.random.SeedSequence([seed, *words]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def rank_generator(
    seed: int, ctx: DistributedContext, *, epoch: int | None = None, device: torch.device | None = None
) -> torch.Generator:
    """This rank's random stream for the estimator, on ``device`` (default ``ctx.device``).

    Rank 0 without ``epoch`` draws exactly ``torch.Generator().manual_seed(seed)``'s stream (a
    single-process run is unchanged); any other (rank, epoch) a seed derived from
    ``(seed, rank, epoch)`` by ``numpy.random.SeedSequence``. Reseeding per epoch lets a run
    resumed from an end-of-epoch checkpoint continue the same streams.
    """
    key = (ctx.rank,) if epoch is None else (ctx.rank, epoch)
    derived = seed if key == (0,) else _derive_seed(seed, ("rank", *key))
    return torch.Generator(device=ctx.device if device is None else device).manual_seed(derived)


def main_only(ctx: DistributedContext) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Decorator: the function runs on rank 0 only and returns ``None`` elsewhere."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T | None:
            return fn(*args, **kwargs) if ctx.is_main else None

        return wrapper

    return decorate


def broadcast_object(obj: T, ctx: DistributedContext) -> T:
    """Rank 0's ``obj`` (picklable) on every rank; every rank must call it."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def all_gather_object(obj: T, ctx: DistributedContext) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` single-process); every rank must call it."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank; no-op single-process."""
    if ctx.is_distributed:
        dist.barrier()


def all_reduce_means(metrics: Mapping[str, float], ctx: DistributedContext, weight: float = 1.0) -> dict[str, float]:
    """Every metric's ``weight``-weighted mean over ranks, ``sum_r w_r v_r / sum_r w_r``, in one all-reduce.

    Every rank must call it with the same keys.
    """
    if not ctx.is_distributed:
        return {key: float(value) for key, value in metrics.items()}
    device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([float(value) * weight for value in metrics.values()] + [weight], dtype=torch.float64)
    values = values.to(device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {key: float(total / values[-1]) for key, total in zip(metrics, values[:-1])}


def all_reduce_mean(value: float | torch.Tensor, ctx: DistributedContext, weight: float = 1.0) -> float:
    """One scalar's weighted mean over ranks: :func:`all_reduce_means` of ``{"value": value}``."""
    return all_reduce_means({"value": float(value)}, ctx, weight)["value"]
