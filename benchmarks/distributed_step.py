"""Training-step throughput of MNIST addition with 1 or more data-parallel processes.

Usage (one line per configuration; run them one after the other)::

    python benchmarks/distributed_step.py --batch-size 10 --out W1-b10.json
    torchrun --standalone --nproc-per-node 2 benchmarks/distributed_step.py --batch-size 5 --out W2-b5.json
    torchrun --standalone --nproc-per-node 2 benchmarks/distributed_step.py --batch-size 10 --out W2-b10.json

Each process trains the addition classifier (``LeNet``, ``D`` digits, the
paper's IndeCateR with 10 samples, Keras' Adam) on synthetic images for ``--warmup``
untimed and then ``--steps`` timed steps, using :mod:`catlog.experiments.distributed`
as the training loop (:mod:`catlog.experiments.training`) does: rank 0's parameters
broadcast, gradients averaged over ranks, :func:`~catlog.experiments.distributed.shard`,
per-rank estimator streams. ``--batch-size`` is per rank, so a step processes
``W * batch_size`` sequences. Rank 0 prints and writes a JSON with the global
throughput (sequences per wall second, from the slowest rank) and every rank's
wall and process CPU seconds per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from catlog.experiments import addition_model as addition
from catlog.experiments import common, distributed
from catlog.experiments.keras import KerasAdam


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=10, help="sequences per rank and step (default: 10)")
    parser.add_argument("--digits", type=int, default=4, help="D, digits per sequence (default: 4)")
    parser.add_argument("--estimator", choices=addition.ESTIMATORS, default="indecater")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process under torchrun)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results (rank 0)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with distributed.process_group(args.device) as ctx:
        torch.manual_seed(args.seed)
        model = addition.LeNet().to(ctx.device)
        distributed.broadcast_parameters(model, ctx)
        optimizer = KerasAdam(model.parameters(), lr=1e-3)
        estimator = addition.make_estimator(args.estimator, args.digits)
        generator = distributed.rank_generator(args.seed, ctx)
        images = torch.rand(2000, 28, 28, generator=torch.Generator().manual_seed(args.seed))
        labels = torch.randint(10, (2000,), generator=torch.Generator().manual_seed(args.seed + 1))
        sequences = addition.digit_sequences(images, labels, args.digits, torch.Generator().manual_seed(args.seed))
        sequences = sequences.to(ctx.device, torch.float32)

        def batches():
            epoch = 0
            while True:
                yield from distributed.shard(len(sequences), args.batch_size, ctx, args.seed, epoch)
                epoch += 1

        stream = batches()

        def step() -> None:
            batch = next(stream)
            images, sums = sequences.batch(batch.indices.to(ctx.device))
            optimizer.zero_grad(set_to_none=True)
            estimate = estimator(addition.sum_indicator(sums), model(images), generator=generator)
            torch.autograd.backward(addition.addition_loss(estimate) * batch.weight)
            distributed.average_gradients(model.parameters(), ctx)
            optimizer.step()

        for _ in range(args.warmup):
            step()
        distributed.barrier(ctx)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        slowest = distributed.all_reduce_mean(wall, ctx)  # ranks finish within one step of each other
        result = {
            "world_size": ctx.world_size,
            "batch_size_per_rank": args.batch_size,
            "global_batch": ctx.world_size * args.batch_size,
            "digits": args.digits,
            "estimator": args.estimator,
            "steps": args.steps,
            "threads_per_process": args.threads,
            "device": str(ctx.device),
            "wall_s_per_step": slowest / args.steps,
            "sequences_per_wall_s": ctx.world_size * args.batch_size * args.steps / slowest,
            "cpu_s_per_step_per_rank": distributed.all_reduce_mean(cpu, ctx) / args.steps,
            "machine": platform.processor() or platform.machine(),
        }
        if ctx.is_main:
            print(json.dumps(result, indent=2))
            if args.out is not None:
                common.write_json(args.out, result)


if __name__ == "__main__":
    main()
