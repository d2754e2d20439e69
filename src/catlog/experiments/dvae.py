"""``catlog dvae``: train the discrete VAE of the paper's figure 3 with one estimator.

Protocol (the paper's section 6.3, as in docs/results.md section 3): Adam lr 1e-4, batch 100; MNIST and Omniglot
binarised at 0.5, Fashion-MNIST grey levels as targets; validation = the first 1000
test images, test = the next 9000. Every ``--log-every`` iterations the log gets the
running train negative ELBO (mean of the training losses since the last row), the
validation negative ELBO (``--eval-samples`` latent samples per image) and the
training time so far (wall and process CPU, evaluation excluded); every
``--variance-every`` iterations the estimator variance: ``common.gradient_variance``
of ``--variance-repeats`` encoder-gradient estimates on a fixed batch (the first
``--batch-size`` training images) at the current parameters. A checkpoint holding the
model, optimiser, random generators and log is written at the end of every epoch;
``--resume`` continues from it exactly.

Outputs in the run folder: ``config.json``, ``log.csv``, ``summary.json``, ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import catlog
from catlog.experiments import common, distributed
from catlog.experiments.dvae_model import DiscreteVAE, encoder_gradients, evaluate_negative_elbo, train_step

DATASETS = ("mnist", "fashion-mnist", "omniglot")
BINARISED = {"mnist": True, "fashion-mnist": False, "omniglot": True}
VALIDATION_SIZE, TEST_SIZE = 1000, 9000
LOG_FIELDS = (
    "iteration",
    "epoch",
    "train_wall_s",
    "train_cpu_s",
    "train_neg_elbo",
    "val_neg_elbo",
    "variance",
    "temperature",
)


def _estimators(num_latents: int, num_categories: int) -> dict[str, tuple[Callable[[int], catlog.Estimator], int]]:
    """``name -> (constructor taking the sample count, default sample count)``; ``-f`` matches
    IndeCateR's 2 samples in evaluations: ``2 * D * K``."""
    full = 2 * num_latents * num_categories
    return {
        "indecater": (catlog.IndeCateR, 2),
        "rloo-s": (catlog.RLOO, 2),
        "rloo-f": (catlog.RLOO, full),
        "gs-s": (catlog.GumbelSoftmax, 2),
        "gs-f": (catlog.GumbelSoftmax, full),
        "reinforce": (catlog.REINFORCE, 2),
    }


ESTIMATOR_NAMES = tuple(_estimators(1, 2))


def make_estimator(
    name: str, num_latents: int, num_categories: int, samples: int | None = None, chunk_size: int | None = None
) -> catlog.Estimator:
    """The estimator called ``name`` (see :data:`ESTIMATOR_NAMES`) with its default or ``samples`` samples.

    ``chunk_size`` bounds IndeCateR's perturbed rows per decoder call (ignored by the others).
    """
    table = _estimators(num_latents, num_categories)
    if name not in table:
        raise ValueError(f"estimator: expected one of {ESTIMATOR_NAMES}, got {name!r}")
    make, default = table[name]
    count = default if samples is None else samples
    if name == "indecater":
        return catlog.IndeCateR(count, chunk_size=chunk_size)
    return make(count)


def load_split(
    dataset: str, data_dir: Path | None, device: torch.device, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` targets ``[N, 784]``: binarised at 0.5 for MNIST and Omniglot."""
    from catlog.data import binarize, load_images

    def prepare(images: torch.Tensor) -> torch.Tensor:
        images = images.flatten(1)
        return (binarize(images) if BINARISED[dataset] else images).to(device=device, dtype=dtype)

    train = prepare(load_images(dataset, "train", data_dir)[0])
    test = prepare(load_images(dataset, "test", data_dir)[0])
    return {
        "train": train,
        "val": test[:VALIDATION_SIZE],
        "test": test[VALIDATION_SIZE : VALIDATION_SIZE + TEST_SIZE],
    }


@dataclass
class TrainState:
    """Everything besides model and optimiser that a checkpoint must restore."""

    epoch: int = 0
    iteration: int = 0
    train_wall_s: float = 0.0
    train_cpu_s: float = 0.0
    window_sum: float = 0.0
    window_count: int = 0
    temperature: float | None = None
    log: list[dict[str, Any]] = field(default_factory=list)


def _save_checkpoint(path: Path, model: DiscreteVAE, optimizer: torch.optim.Optimizer,
                     generators: dict[str, torch.Generator], state: TrainState,
                     ctx: distributed.DistributedContext) -> None:
    """Every rank calls it (the ranks' training streams are gathered); rank 0 writes."""
    train_states = distributed.all_gather_object(generators["train"].get_state(), ctx)
    if not ctx.is_main:
        return
    common.write_torch(
        path,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generators": {"eval": generators["eval"].get_state(), "train": train_states},
            "state": asdict(state),
        },
    )


def _load_checkpoint(path: Path, model: DiscreteVAE, optimizer: torch.optim.Optimizer,
                     generators: dict[str, torch.Generator], ctx: distributed.DistributedContext) -> TrainState:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    train_states = saved["generators"]["train"]
    if len(train_states) != ctx.world_size:
        raise ValueError(
            f"--resume: expected the checkpoint's {len(train_states)} processes, got a world size of {ctx.world_size}"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    generators["eval"].set_state(saved["generators"]["eval"])
    generators["train"].set_state(train_states[ctx.rank])
    return TrainState(**saved["state"])


def _anneal(estimator: catlog.Estimator, state: TrainState) -> None:
    """Gumbel-Softmax temperature for ``state.epoch``: ``exp(-0.01 * epoch)`` clipped to [0.1, 1]."""
    if isinstance(estimator, catlog.GumbelSoftmax):
        estimator.temperature = min(1.0, max(0.1, math.exp(-0.01 * state.epoch)))
        state.temperature = estimator.temperature


def train(args: argparse.Namespace, ctx: distributed.DistributedContext | None = None) -> dict[str, Any]:
    """Run ``catlog dvae`` with parsed ``args`` (data-parallel under ``ctx``); returns the summary it writes
    (on every rank; only rank 0 writes files)."""
    device, dtype = common.apply_common_options(args)
    ctx = distributed.DistributedContext(device=device) if ctx is None else ctx
    device = ctx.device
    main_only = distributed.main_only(ctx)
    if args.epochs is None and args.time_budget is None:
        args.epochs = 10
    common.check_at_least(args, {"log_every": 1, "variance_every": 0, "variance_repeats": 2})
    if args.variance_every % args.log_every:
        raise ValueError(
            f"--variance-every: expected a multiple of --log-every ({args.log_every}), got {args.variance_every}"
        )
    out = distributed.broadcast_object(
        common.output_dir(args.out, f"dvae-{args.dataset}-{args.estimator}") if ctx.is_main else None, ctx
    )
    torch.manual_seed(args.seed)
    model = DiscreteVAE(args.latents, args.categories).to(device=device, dtype=dtype)
    distributed.broadcast_parameters(model, ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    estimator = make_estimator(args.estimator, args.latents, args.categories, args.samples, args.chunk_size)
    generators = {
        "train": distributed.rank_generator(args.seed, ctx, device=device),
        "eval": torch.Generator(device=device).manual_seed(args.seed + 1),
    }

    checkpoint = out / "checkpoint.pt"
    state = TrainState()
    if args.resume and checkpoint.is_file():
        state = _load_checkpoint(checkpoint, model, optimizer, generators, ctx)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    config["estimator_repr"] = repr(estimator)
    config["cost_per_image"] = estimator.cost(args.latents, args.categories)._asdict()
    config["world_size"] = ctx.world_size
    main_only(common.write_json)(out / "config.json", config)

    splits = load_split(args.dataset, args.data_dir, device, dtype)
    train_images = splits["train"][: args.train_limit]
    val_images = splits["val"][: args.eval_limit]
    variance_batch = train_images[: args.batch_size]
    clock = common.Clock(device)
    clock.wall_s, clock.cpu_s = state.train_wall_s, state.train_cpu_s
    budget_clock = (lambda: clock.cpu_s) if args.budget_clock == "cpu" else (lambda: clock.wall_s)

    budget_reached = False

    def out_of_budget() -> bool:
        return args.time_budget is not None and budget_clock() >= args.time_budget

    def log_row(measure_variance: bool) -> None:
        row = {
            "iteration": state.iteration,
            "epoch": state.epoch,
            "train_wall_s": clock.wall_s,
            "train_cpu_s": clock.cpu_s,
            "train_neg_elbo": state.window_sum / max(state.window_count, 1),
            "val_neg_elbo": evaluate_negative_elbo(model, val_images, args.eval_samples, generators["eval"]),
            "variance": "",
            "temperature": "" if state.temperature is None else state.temperature,
        }
        if measure_variance:
            estimates = encoder_gradients(model, estimator, variance_batch, args.variance_repeats, generators["eval"])
            row["variance"] = common.gradient_variance(estimates)
        state.window_sum, state.window_count = 0.0, 0
        state.log.append(row)
        common.write_csv(out / "log.csv", state.log, LOG_FIELDS)

    def finished() -> bool:
        return budget_reached or (args.epochs is not None and state.epoch >= args.epochs)

    started = time.perf_counter()
    while not finished():
        _anneal(estimator, state)
        batches = distributed.shard(train_images.shape[0], args.batch_size, ctx, args.seed, state.epoch)
        bar = common.progress(batches, desc=f"epoch {state.epoch + 1}", disable=not ctx.is_main)
        for part in bar:
            batch = train_images[part.indices.to(device)]
            loss = clock.timed(
                lambda: train_step(model, optimizer, estimator, batch, generators["train"], part.weight, ctx)  # noqa: B023 (called at once)
            )
            # The mean loss over the global batch, and whether any rank ran out of budget.
            reduced = distributed.all_reduce_means(
                {"loss": loss, "budget": float(out_of_budget())}, ctx, part.indices.numel()
            )
            loss, budget_reached = reduced["loss"], reduced["budget"] > 0
            state.iteration += 1
            state.window_sum += loss
            state.window_count += 1
            state.train_wall_s, state.train_cpu_s = clock.wall_s, clock.cpu_s
            bar.set_postfix(neg_elbo=f"{loss:.2f}", refresh=False)
            if state.iteration % args.log_every == 0 and ctx.is_main:
                log_row(args.variance_every > 0 and state.iteration % args.variance_every == 0)
            if budget_reached:
                break
        bar.close()
        if not budget_reached:
            state.epoch += 1
        if state.window_count and finished() and ctx.is_main:
            log_row(args.variance_every > 0)
        _save_checkpoint(checkpoint, model, optimizer, generators, state, ctx)
        main_only(print)(
            f"epoch {state.epoch}, iteration {state.iteration}, {clock.cpu_s:.0f} s CPU training", flush=True
        )

    if not ctx.is_main:
        return {}

    eval_samples = args.eval_samples
    summary = {
        "dataset": args.dataset,
        "estimator": args.estimator,
        "iterations": state.iteration,
        "epochs": state.iteration * ctx.world_size * args.batch_size / train_images.shape[0],
        "train_wall_s": state.train_wall_s,
        "train_cpu_s": state.train_cpu_s,
        "budget_clock": args.budget_clock,
        "final_train_neg_elbo_running": state.log[-1]["train_neg_elbo"] if state.log else None,
        "final_val_neg_elbo": state.log[-1]["val_neg_elbo"] if state.log else None,
        "final_variance": next((r["variance"] for r in reversed(state.log) if r["variance"] != ""), None),
        "eval_samples": eval_samples,
        "train_neg_elbo": evaluate_negative_elbo(
            model, train_images[:TEST_SIZE][: args.eval_limit], eval_samples, generators["eval"]
        ),
        "test_neg_elbo": evaluate_negative_elbo(
            model, splits["test"][: args.eval_limit], eval_samples, generators["eval"]
        ),
        "session_wall_s": time.perf_counter() - started,
    }
    common.write_json(out / "summary.json", summary)
    print(f"test -ELBO {summary['test_neg_elbo']:.2f}, train -ELBO {summary['train_neg_elbo']:.2f}; results in {out}")
    return summary


def _run(args: argparse.Namespace) -> int:
    ctx = distributed.setup(args.device)
    try:
        train(args, ctx)
    finally:
        distributed.teardown()
    return 0


def variance_at_checkpoint(
    run: Path, names: list[str], repeats: int, seed: int = 0, data_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Estimator variance of each estimator in ``names`` at the parameters of ``run``'s checkpoint.

    Same measurement as during training (``repeats`` encoder-gradient estimates on the first
    batch of training images, ``common.gradient_variance``), but every estimator at the same
    parameters. Returns one row per estimator with its variance and CPU seconds per estimate.
    """
    config = json.loads((run / "config.json").read_text())
    dtype = common.DTYPES[config["dtype"]]
    model = DiscreteVAE(config["latents"], config["categories"]).to(dtype=dtype)
    model.load_state_dict(torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"])
    data_dir = data_dir if data_dir is not None else config["data_dir"] and Path(config["data_dir"])
    images = load_split(config["dataset"], data_dir, torch.device("cpu"), dtype)["train"][: config["batch_size"]]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for name in names:
        estimator = make_estimator(name, config["latents"], config["categories"], chunk_size=config["chunk_size"])
        clock = common.Clock()
        estimates = clock.timed(lambda: encoder_gradients(model, estimator, images, repeats, generator))  # noqa: B023 (called at once)
        rows.append(
            {
                "estimator": name,
                "samples": estimator.num_samples,
                "variance": common.gradient_variance(estimates),
                "cpu_s_per_estimate": clock.cpu_s / repeats,
            }
        )
    return rows


def _variance(args: argparse.Namespace) -> int:
    common.apply_threads(args.threads)
    rows = variance_at_checkpoint(args.run, args.estimators, args.repeats, args.seed, args.data_dir)
    path = common.write_csv(args.run / "variance_at_checkpoint.csv", rows)
    for row in rows:
        print(f"{row['estimator']:>10}  variance {row['variance']:.3e}  {row['cpu_s_per_estimate']:.3f} s CPU/estimate")
    print(f"written to {path}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from catlog.experiments.dvae_plot import plot_runs

    path = plot_runs(args.runs, args.output, x_axis=args.x_axis)
    print(f"figure written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dvae``, ``dvae-plot`` and ``dvae-variance`` subcommands."""
    parser = subparsers.add_parser(
        "dvae",
        help="train the discrete VAE (paper figure 3) with one estimator",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    parser.add_argument("--estimator", choices=ESTIMATOR_NAMES, required=True)
    parser.add_argument(
        "--samples", type=int, default=None, help="samples N (default: the estimator's: 2, or 2*D*K for -f)"
    )
    parser.add_argument("--latents", type=int, default=200, help="latent variables D (default 200)")
    parser.add_argument("--categories", type=int, default=2, help="categories K of each latent (default 2: Bernoulli)")
    length = parser.add_argument_group("length (the first reached stops training; default --epochs 10)")
    length.add_argument("--epochs", type=int, default=None)
    length.add_argument("--time-budget", type=float, default=None, help="training seconds (evaluation excluded)")
    length.add_argument("--budget-clock", choices=("cpu", "wall"), default="cpu",
                        help="clock of --time-budget: process CPU time (default; robust on a shared machine) or wall")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=10,
                        help="IndeCateR: perturbed sample rows per decoder call, each a whole batch (default 10: "
                        "1000 latent vectors at batch 100; bounds peak memory at no cost in speed)")
    parser.add_argument("--log-every", type=int, default=100, help="iterations between log rows (default 100)")
    parser.add_argument("--eval-samples", type=int, default=10,
                        help="latent samples per image for validation/test -ELBO (default 10; the reference used 1000)")
    parser.add_argument("--variance-every", type=int, default=100,
                        help="iterations between variance measurements, a multiple of --log-every (0: never)")
    parser.add_argument("--variance-repeats", type=int, default=10, help="gradient estimates per variance measurement")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data folder (default: $CATLOG_DATA or ~/.cache/catlog)"
    )
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--eval-limit", type=int, default=None, help="use only the first N validation and test images")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    common.add_common_options(parser)
    parser.set_defaults(func=_run)

    plot = subparsers.add_parser("dvae-plot", help="figure 3 row: train/test -ELBO and variance of dvae runs")
    plot.add_argument("runs", nargs="+", type=Path, help="run folders of catlog dvae")
    plot.add_argument("--output", type=Path, default=Path("dvae.png"))
    plot.add_argument("--x-axis", choices=("cpu", "wall", "iteration"), default="cpu",
                      help="training CPU seconds (default), wall seconds or iterations")
    plot.set_defaults(func=_plot)

    variance = subparsers.add_parser(
        "dvae-variance", help="variance of several estimators at the parameters of a dvae run's checkpoint"
    )
    variance.add_argument("run", type=Path, help="run folder of catlog dvae")
    variance.add_argument("--estimators", nargs="+", choices=ESTIMATOR_NAMES, default=list(ESTIMATOR_NAMES[:5]))
    variance.add_argument("--repeats", type=int, default=10, help="gradient estimates per estimator (default 10)")
    variance.add_argument("--data-dir", type=Path, default=None, help="data folder (default: the run's)")
    variance.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    variance.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    variance.set_defaults(func=_variance)

