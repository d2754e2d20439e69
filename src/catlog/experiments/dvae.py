"""``catlog dvae``: train the discrete VAE of the paper's figure 3 with one estimator.

Protocol (the paper's section 6.3, as in docs/results.md section 3): Adam lr 1e-4, batch 100; MNIST and Omniglot
binarised at 0.5, Fashion-MNIST grey levels as targets; validation = the first 1000
test images, test = the next 9000. Every ``--log-every`` iterations the log gets the
running train negative ELBO (mean of the training losses since the last row), the
validation negative ELBO (``--eval-samples`` latent samples per image) and the
training time so far (wall and process CPU, evaluation excluded); every
``--variance-every`` iterations the estimator variance: ``common.gradient_variance``
of ``--variance-repeats`` encoder-gradient estimates on a fixed batch (the first
``--batch-size`` training images) at the current parameters. Every row also has
``gradient_spread``, the authors' "gradient variance" (the spread of the entries
within one gradient, :func:`gradient_spread`) averaged over the steps since the last
row, so that curves can be compared with the paper's. A checkpoint holding the
model, optimiser, random generators and log is written at the end of every epoch;
``--resume`` continues from it exactly.

Outputs in the run folder: ``config.json``, ``log.csv``, ``summary.json``, ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

import catlog
from catlog.experiments import common, data, distributed, estimators, run_folder
from catlog.experiments.dvae_model import DiscreteVAE, encoder_gradients, evaluate_negative_elbo, train_step
from catlog.experiments.keras import KerasAdam

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
    "gradient_spread",
    "temperature",
)


# The paper's five, DisARM (the binary VAE's standard unbiased baseline), then the rest of the vocabulary.
ESTIMATORS: tuple[str, ...] = ("indecater", "rloo-s", "rloo-f", "gs-st-s", "gs-st-f", "disarm-s", "reinforce-s")
DEFAULT_SAMPLES = 2
# Settings a resumed run may change; any other difference from the saved config is refused.
MAY_CHANGE: tuple[str, ...] = (
    "epochs",
    "time_budget",
    "budget_clock",
    "device",
    "threads",
    "out",
    "resume",
    "overwrite",
    "data_dir",
    "cache_dir",
)


@dataclass(frozen=True, kw_only=True)
class DvaeConfig(common.RunOptions):
    """Settings of ``catlog dvae`` (see :func:`add_options` for their meaning)."""

    estimator: str = "indecater"
    dataset: str = "mnist"
    samples: int = DEFAULT_SAMPLES
    latents: int = 200
    categories: int = 2
    epochs: int | None = None
    time_budget: float | None = None
    budget_clock: str = "cpu"
    lr: float = 1e-4
    batch_size: int = 100
    chunk_size: int | None = 10
    log_every: int = 100
    eval_samples: int = 10
    variance_every: int = 100
    variance_repeats: int = 10
    data_dir: Path | None = None
    cache_dir: Path | None = None
    train_limit: int | None = None
    eval_limit: int | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for option in ("samples", "latents", "batch_size", "log_every", "eval_samples"):
            common.check_at_least("--" + option.replace("_", "-"), getattr(self, option), 1)
        common.check_at_least("--categories", self.categories, 2)
        common.check_at_least("--variance-every", self.variance_every, 0)
        common.check_at_least("--variance-repeats", self.variance_repeats, 2)
        for option in ("epochs", "chunk_size", "train_limit", "eval_limit"):
            if getattr(self, option) is not None:
                common.check_at_least("--" + option.replace("_", "-"), getattr(self, option), 1)
        if self.time_budget is not None and self.time_budget <= 0:
            raise common.OptionError("--time-budget", f"expected a positive number of seconds, got {self.time_budget}")
        if self.estimator.startswith("rloo"):
            common.check_at_least("--samples", self.samples, 2)
        if self.variance_every % self.log_every:
            raise common.OptionError(
                "--variance-every", f"expected a multiple of --log-every ({self.log_every}), got {self.variance_every}"
            )
        if self.resume and self.out is None:
            raise common.OptionError("--resume", "expected --out naming the run folder to resume, got none")

    @property
    def max_epochs(self) -> int | None:
        """``--epochs``; 10 when neither it nor ``--time-budget`` is given; ``None``: the budget alone stops."""
        if self.epochs is not None or self.time_budget is not None:
            return self.epochs
        return 10


def make_estimator(
    name: str, num_latents: int, num_categories: int, samples: int = DEFAULT_SAMPLES, chunk_size: int | None = None
) -> catlog.Estimator:
    """The estimator ``name`` of the vocabulary with ``N = samples`` on ``D = num_latents`` latents of ``K`` categories.

    ``chunk_size`` bounds IndeCateR's perturbed rows per decoder call (ignored by the others).
    """
    return estimators.make(name, estimators.Budget(samples, num_latents, num_categories, chunk_size=chunk_size))


def load_split(
    dataset: str, data_dir: Path | None, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` targets ``[N, 784]``: binarised at 0.5 for MNIST and Omniglot."""

    def prepare(images: torch.Tensor) -> torch.Tensor:
        images = images.flatten(1)
        return (data.binarize(images) if BINARISED[dataset] else images).to(device=device, dtype=dtype)

    train = prepare(data.load_images(dataset, "train", data_dir, cache=cache_dir)[0])
    test = prepare(data.load_images(dataset, "test", data_dir, cache=cache_dir)[0])
    return {
        "train": train,
        "val": test[:VALIDATION_SIZE],
        "test": test[VALIDATION_SIZE : VALIDATION_SIZE + TEST_SIZE],
    }


@dataclass(frozen=True)
class TrainState:
    """The progress of a run: everything besides model, optimiser and generators that a checkpoint restores.

    Attributes:
        epoch: epochs completed.
        iteration: optimiser steps taken.
        train_wall_s, train_cpu_s: training time so far (evaluation excluded).
        window_sum, window_count: sum and count of the training losses since the last log row.
        spread_sum: sum of :func:`gradient_spread` over the steps since the last log row.
        temperature: the Gumbel-Softmax temperature of this epoch (``None`` for the others).
        budget_reached: the time budget stopped the run.
        log: the log rows so far.
    """

    epoch: int = 0
    iteration: int = 0
    train_wall_s: float = 0.0
    train_cpu_s: float = 0.0
    window_sum: float = 0.0
    window_count: int = 0
    spread_sum: float = 0.0
    temperature: float | None = None
    budget_reached: bool = False
    log: tuple[dict[str, Any], ...] = ()


class Trainer(NamedTuple):
    """What stays fixed during a run (the model and optimiser change in place, the state does not)."""

    config: DvaeConfig
    out: Path
    ctx: distributed.DistributedContext
    model: DiscreteVAE
    optimizer: torch.optim.Optimizer
    estimator: catlog.Estimator
    generators: dict[str, torch.Generator]
    splits: dict[str, torch.Tensor]
    clock: common.Clock


def init(
    config: DvaeConfig, splits: dict[str, torch.Tensor], out: Path, ctx: distributed.DistributedContext
) -> tuple[Trainer, TrainState]:
    """Build model, optimiser, estimator and generators from ``config``; the state is fresh or, with
    ``config.resume``, the checkpoint's. ``splits``: :func:`load_split`'s, limited by ``--train-limit``
    and ``--eval-limit``."""
    device = ctx.device
    torch.manual_seed(config.seed)
    model = DiscreteVAE(config.latents, config.categories).to(device=device, dtype=config.torch_dtype)
    distributed.broadcast_parameters(model, ctx)
    trainer = Trainer(
        config=config,
        out=out,
        ctx=ctx,
        model=model,
        optimizer=KerasAdam(model.parameters(), lr=config.lr),
        estimator=make_estimator(
            config.estimator, config.latents, config.categories, config.samples, config.chunk_size
        ),
        generators={
            "train": distributed.rank_generator(config.seed, ctx, device=device),
            "eval": torch.Generator(device=device).manual_seed(config.seed + 1),
        },
        splits=splits,
        clock=common.Clock(device),
    )
    state = load(trainer) if config.resume else TrainState()
    trainer.clock.wall_s, trainer.clock.cpu_s = state.train_wall_s, state.train_cpu_s
    return trainer, state


def save(trainer: Trainer, state: TrainState) -> None:
    """Checkpoint model, optimiser, generators and state. Every rank calls it (the ranks' training
    streams are gathered); rank 0 writes."""
    train_states = distributed.all_gather_object(trainer.generators["train"].get_state(), trainer.ctx)
    if not trainer.ctx.is_main:
        return
    run_folder.save_checkpoint(
        trainer.out / run_folder.CHECKPOINT,
        {
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "generators": {"eval": trainer.generators["eval"].get_state(), "train": train_states},
            "state": {**asdict(state), "log": list(state.log)},
        },
    )


def load(trainer: Trainer) -> TrainState:
    """Restore model, optimiser and generators from the run's checkpoint; returns its state."""
    saved = run_folder.load_checkpoint(trainer.out / run_folder.CHECKPOINT)
    train_states = saved["generators"]["train"]
    if len(train_states) != trainer.ctx.world_size:
        raise run_folder.RunFolderError(
            f"--resume: expected the checkpoint's {len(train_states)} processes, "
            f"got a world size of {trainer.ctx.world_size}"
        )
    trainer.model.load_state_dict(saved["model"])
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.generators["eval"].set_state(saved["generators"]["eval"])
    trainer.generators["train"].set_state(train_states[trainer.ctx.rank])
    return TrainState(**{**saved["state"], "log": tuple(saved["state"]["log"])})


def anneal(trainer: Trainer, state: TrainState) -> TrainState:
    """Relaxation temperature for ``state.epoch``: ``exp(-0.01 * epoch)`` clipped to [0.1, 1].

    Applies to every estimator with a ``temperature`` (the Gumbel-Softmax family); the others pass.
    """
    if not hasattr(trainer.estimator, "temperature"):
        return state
    trainer.estimator.temperature = min(1.0, max(0.1, math.exp(-0.01 * state.epoch)))
    return replace(state, temperature=trainer.estimator.temperature)


def log_row(trainer: Trainer, state: TrainState, measure_variance: bool) -> TrainState:
    """Evaluate, append a log row (the variance too if ``measure_variance``), rewrite ``log.csv``; rank 0 only."""
    config, clock = trainer.config, trainer.clock
    row = {
        "iteration": state.iteration,
        "epoch": state.epoch,
        "train_wall_s": clock.wall_s,
        "train_cpu_s": clock.cpu_s,
        "train_neg_elbo": state.window_sum / max(state.window_count, 1),
        "val_neg_elbo": evaluate_negative_elbo(
            trainer.model, trainer.splits["val"], config.eval_samples, trainer.generators["eval"]
        ),
        "variance": "",
        "gradient_spread": state.spread_sum / max(state.window_count, 1),
        "temperature": "" if state.temperature is None else state.temperature,
    }
    if measure_variance:
        batch = trainer.splits["train"][: config.batch_size]
        estimates = encoder_gradients(
            trainer.model, trainer.estimator, batch, config.variance_repeats, trainer.generators["eval"]
        )
        row["variance"] = common.gradient_variance(estimates)
    state = replace(state, window_sum=0.0, window_count=0, spread_sum=0.0, log=(*state.log, row))
    common.write_csv(trainer.out / "log.csv", state.log, LOG_FIELDS)
    return state


def gradient_spread(parameters: Iterable[torch.nn.Parameter]) -> float:
    """What the authors' code logs as "gradient variance": the spread of the entries within one gradient.

    ``1/P sum_p Var_i(g_p[i])`` over the ``P`` parameter tensors of the last step's gradient
    ``g_p`` (population variance of each tensor's entries). It is not an estimator's
    variance (that is ``variance``: across repeated estimates at fixed parameters); it is
    logged so that our curves can be held against the paper's figure 3.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    return float(torch.stack([g.var(unbiased=False) for g in grads]).mean()) if grads else 0.0


def step(trainer: Trainer, state: TrainState, part: distributed.Batch) -> TrainState:
    """One optimiser step on the batch ``part``; the state counts it, adds its loss and checks the budget."""
    config, clock, ctx = trainer.config, trainer.clock, trainer.ctx
    batch = trainer.splits["train"][part.indices.to(ctx.device)]
    loss = clock.timed(
        lambda: train_step(
            trainer.model, trainer.optimizer, trainer.estimator, batch, trainer.generators["train"], part.weight, ctx
        )
    )
    budget_clock = clock.cpu_s if config.budget_clock == "cpu" else clock.wall_s
    out_of_budget = config.time_budget is not None and budget_clock >= config.time_budget
    # The mean loss over the global batch, and whether any rank ran out of budget.
    reduced = distributed.all_reduce_means({"loss": loss, "budget": float(out_of_budget)}, ctx, part.indices.numel())
    return replace(
        state,
        iteration=state.iteration + 1,
        window_sum=state.window_sum + reduced["loss"],
        window_count=state.window_count + 1,
        spread_sum=state.spread_sum + gradient_spread(trainer.model.parameters()),
        train_wall_s=clock.wall_s,
        train_cpu_s=clock.cpu_s,
        budget_reached=reduced["budget"] > 0,
    )


def finished(config: DvaeConfig, state: TrainState) -> bool:
    """The time budget was reached or ``config.max_epochs`` epochs are done."""
    return state.budget_reached or (config.max_epochs is not None and state.epoch >= config.max_epochs)


def run_epoch(trainer: Trainer, state: TrainState) -> TrainState:
    """One pass over the training images (cut short by the time budget), its log rows and checkpoint."""
    config, ctx = trainer.config, trainer.ctx
    state = anneal(trainer, state)
    batches = distributed.shard(trainer.splits["train"].shape[0], config.batch_size, ctx, config.seed, state.epoch)
    bar = common.progress(batches, desc=f"epoch {state.epoch + 1}", disable=not ctx.is_main)
    for part in bar:
        state = step(trainer, state, part)
        bar.set_postfix(neg_elbo=f"{state.window_sum / state.window_count:.2f}", refresh=False)
        if state.iteration % config.log_every == 0 and ctx.is_main:
            state = log_row(trainer, state, config.variance_every > 0 and state.iteration % config.variance_every == 0)
        if state.budget_reached:
            break
    bar.close()
    if not state.budget_reached:
        state = replace(state, epoch=state.epoch + 1)
    if state.window_count and finished(config, state) and ctx.is_main:
        state = log_row(trainer, state, config.variance_every > 0)
    save(trainer, state)
    if state.budget_reached:
        progress = f"time budget reached in epoch {state.epoch + 1} at iteration {state.iteration}"
    else:
        progress = f"epoch {state.epoch} done at iteration {state.iteration}"
    distributed.main_only(ctx)(print)(f"{progress}, {trainer.clock.cpu_s:.0f} s CPU training", flush=True)
    return state


def summarise(trainer: Trainer, state: TrainState, session_wall_s: float) -> dict[str, Any]:
    """The summary of a finished run: final log values and train/test negative ELBO."""
    config, splits, log = trainer.config, trainer.splits, state.log

    def negative_elbo(images: torch.Tensor) -> float:
        return evaluate_negative_elbo(trainer.model, images, config.eval_samples, trainer.generators["eval"])

    return {
        "dataset": config.dataset,
        "estimator": config.estimator,
        "seed": config.seed,
        "iterations": state.iteration,
        "epochs": state.iteration * trainer.ctx.world_size * config.batch_size / splits["train"].shape[0],
        "train_wall_s": state.train_wall_s,
        "train_cpu_s": state.train_cpu_s,
        "budget_clock": config.budget_clock,
        "final_train_neg_elbo_running": log[-1]["train_neg_elbo"] if log else None,
        "final_val_neg_elbo": log[-1]["val_neg_elbo"] if log else None,
        "final_variance": next((r["variance"] for r in reversed(log) if r["variance"] != ""), None),
        "eval_samples": config.eval_samples,
        "train_neg_elbo": negative_elbo(splits["train"][:TEST_SIZE][: config.eval_limit]),
        "test_neg_elbo": negative_elbo(splits["test"]),
        "session_wall_s": session_wall_s,
    }


def train(config: DvaeConfig, out: Path, ctx: distributed.DistributedContext) -> dict[str, Any]:
    """Train as ``config`` says, writing into ``out`` (rank 0); returns the summary (empty on other ranks)."""
    started = time.perf_counter()
    splits = load_split(config.dataset, config.data_dir, ctx.device, config.torch_dtype, config.cache_dir)
    splits = {
        "train": splits["train"][: config.train_limit],
        "val": splits["val"][: config.eval_limit],
        "test": splits["test"][: config.eval_limit],
    }
    trainer, state = init(config, splits, out, ctx)
    while not finished(config, state):
        state = run_epoch(trainer, state)
    if not ctx.is_main:
        return {}
    summary = summarise(trainer, state, time.perf_counter() - started)
    common.write_json(out / "summary.json", summary)
    print(f"test -ELBO {summary['test_neg_elbo']:.2f}, train -ELBO {summary['train_neg_elbo']:.2f}; results in {out}")
    return summary


def run(config: DvaeConfig) -> int:
    """The ``catlog dvae`` command (also under ``torchrun``): checks the data, opens the run folder, trains."""
    with distributed.process_group(config.device) as ctx:
        common.apply_threads(config.threads)
        data.check_dataset(config.dataset, config.data_dir)
        experiment = f"dvae-{config.dataset}-{config.estimator}"
        with run_folder.open_on_main(config, experiment, ctx, MAY_CHANGE) as out:
            train(config, out, ctx)
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
    model.load_state_dict(run_folder.load_checkpoint(run / run_folder.CHECKPOINT)["model"])
    data_dir = data_dir if data_dir is not None else config["data_dir"] and Path(config["data_dir"])
    cache_dir = config.get("cache_dir") and Path(config["cache_dir"])  # absent from older runs
    split = load_split(config["dataset"], data_dir, torch.device("cpu"), dtype, cache_dir)
    images = split["train"][: config["train_limit"]][: config["batch_size"]]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for name in names:
        estimator = make_estimator(
            name,
            config["latents"],
            config["categories"],
            config.get("samples") or DEFAULT_SAMPLES,  # older runs saved None for the default
            chunk_size=config["chunk_size"],
        )
        clock = common.Clock()
        estimates = clock.timed(lambda: encoder_gradients(model, estimator, images, repeats, generator))  # noqa: B023 (called at once)
        rows.append(
            {
                "estimator": name,
                "samples": estimator.cost(config["latents"], config["categories"]).samples,
                "variance": common.gradient_variance(estimates),
                "cpu_s_per_estimate": clock.cpu_s / repeats,
            }
        )
    return rows


@dataclass(frozen=True)
class VarianceConfig:
    """Settings of ``catlog dvae-variance`` (see :func:`add_variance_options`)."""

    run: Path
    estimators: tuple[str, ...] = ESTIMATORS[:6]
    repeats: int = 10
    data_dir: Path | None = None
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        common.check_at_least("--repeats", self.repeats, 2)
        if self.threads is not None:
            common.check_at_least("--threads", self.threads, 1)
        for name in (run_folder.CONFIG, run_folder.CHECKPOINT):
            if not (self.run / name).is_file():
                raise common.OptionError(
                    "run", f"expected a folder of `catlog dvae` holding {name}, got {str(self.run)!r}"
                )


def run_variance(config: VarianceConfig) -> int:
    """The ``catlog dvae-variance`` command: writes ``variance_at_checkpoint.csv`` into the run folder."""
    common.apply_threads(config.threads)
    rows = variance_at_checkpoint(config.run, list(config.estimators), config.repeats, config.seed, config.data_dir)
    path = common.write_csv(config.run / "variance_at_checkpoint.csv", rows)
    for row in rows:
        print(f"{row['estimator']:>10}  variance {row['variance']:.3e}  {row['cpu_s_per_estimate']:.3f} s CPU/estimate")
    print(f"written to {path}")
    return 0


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog dvae`` (without the common ones)."""
    parser.add_argument(
        "--estimator",
        choices=estimators.NAMES,
        default="indecater",
        metavar="NAME",
        help="gradient estimator (names below)",
    )
    parser.add_argument("--dataset", choices=DATASETS, default="mnist", help="training images")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="N (-f estimators take D*K*N samples)")
    parser.add_argument("--latents", type=int, default=200, help="latent variables D")
    parser.add_argument("--categories", type=int, default=2, help="categories K of each latent (2: Bernoulli)")
    length = parser.add_argument_group("length (the first reached stops training; neither given: --epochs 10)")
    length.add_argument("--epochs", type=int, default=None, help="passes over the training images")
    length.add_argument("--time-budget", type=float, default=None, help="training seconds (evaluation excluded)")
    length.add_argument(
        "--budget-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="clock of --time-budget: process CPU time (robust on a shared machine) or wall",
    )
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=100, help="images per step")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=10,
        help="IndeCateR: perturbed sample rows per decoder call, each a whole batch (10: "
        "1000 latent vectors at batch 100; bounds peak memory at no cost in speed)",
    )
    parser.add_argument("--log-every", type=int, default=100, help="iterations between log rows")
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=10,
        help="latent samples per image for validation/test -ELBO (the reference used 1000)",
    )
    parser.add_argument(
        "--variance-every",
        type=int,
        default=100,
        help="iterations between variance measurements, a multiple of --log-every (0: never)",
    )
    parser.add_argument("--variance-repeats", type=int, default=10, help="gradient estimates per variance measurement")
    data.add_data_options(parser, cache=True)
    parser.add_argument(
        "--train-limit", type=int, default=None, help="use only the first N training images (None: all)"
    )
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="use only the first N validation and test images (None: all)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint.pt")


def add_variance_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``catlog dvae-variance``."""
    parser.add_argument("run", type=Path, help="run folder of catlog dvae")
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=estimators.NAMES,
        default=list(ESTIMATORS[:6]),
        metavar="NAME",
        help="estimators to measure (names below)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="gradient estimates per estimator")
    parser.add_argument("--data-dir", type=Path, default=None, help="existing data folder (None: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (None: torch's choice)")


COMMANDS = (
    common.Command(
        "dvae",
        help="train the discrete VAE (paper figure 3) with one estimator",
        description=__doc__,
        add_options=add_options,
        config=lambda args: common.config_from_args(DvaeConfig, args),
        run=run,
    ),
    common.Command(
        "dvae-variance",
        help="variance of several estimators at the parameters of a dvae run's checkpoint",
        description=variance_at_checkpoint.__doc__ or "",
        add_options=add_variance_options,
        config=lambda args: common.config_from_args(VarianceConfig, args),
        run=run_variance,
        common=False,
    ),
)
