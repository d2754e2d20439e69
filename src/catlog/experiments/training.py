"""The one training loop of ``catlog dvae``, ``addition``, ``plan`` and ``generate``.

An experiment supplies a :class:`Task`; :func:`train` seeds torch, builds the task (model on the
device, rank 0's parameters everywhere), Keras' Adam over the model's and the estimator's learned
parameters, a training random stream per rank and an evaluation stream (``seed + 1``), then steps
(loss scaled by the rank's weight, gradients averaged over ranks; only steps are timed) for
``max_epochs`` epochs or ``--time-budget`` seconds on ``--budget-clock``, whichever comes first.
Where :meth:`Task.log_due` says (iteration 0: before the first step) and at the end it writes a
row of ``log.csv`` (iteration, epoch, training time, the step statistics and :func:`gradient_spread`
averaged over the examples since the last row, :meth:`Task.evaluate`), prints it and checkpoints
(:mod:`catlog.experiments.run_folder`'s format); ``--resume`` continues bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

import catlog
from catlog.experiments import common, distributed, estimators, run_folder
from catlog.experiments.keras import KerasAdam
from catlog.experiments.options import OptionError, RunOptions, option

# Settings a resumed run may change; any other difference from the saved config is refused.
MAY_CHANGE: tuple[str, ...] = (
    *("epochs", "iterations", "time_budget", "budget_clock", "device", "threads", "out", "resume"),
    *("overwrite", "data_dir", "cache_dir", "early_logs", "plot"),
)
LENGTH = "length (the first reached stops training)"


def epochs_option(default: int) -> Any:
    """The ``--epochs`` option of a command that trains ``default`` epochs without ``--time-budget``."""
    text = f"{default} without --time-budget"
    return option(None, "passes over the training examples", minimum=1, group=LENGTH, default_text=text)


@dataclass(frozen=True, kw_only=True)
class TrainingOptions(RunOptions):
    """The options of every training command; each declares its length in epochs and its ``lr`` default.

    Attributes:
        default_epochs: the epochs when neither the length nor ``time_budget`` is given.
        length_option: the field giving the length in epochs (``"iterations"`` where an epoch is one step).
    """

    default_epochs: ClassVar[int] = 1
    length_option: ClassVar[str] = "epochs"
    time_budget: float | None = option(
        None, "training seconds (evaluation excluded)", above=0, group=LENGTH, default_text="none"
    )
    budget_clock: str = option(
        "cpu",
        "clock of --time-budget: process CPU time (robust on a shared machine) or wall",
        choices=("cpu", "wall"),
        group=LENGTH,
    )
    lr: float = option(1e-3, "Adam learning rate", above=0)
    estimator_lr: float | None = option(
        None, "Adam learning rate of the estimator's learned parameters (REBAR, RELAX)", above=0, default_text="--lr"
    )
    resume: bool = option(False, "continue the run in --out from its checkpoint.pt")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resume and self.out is None:
            raise OptionError("--resume", "expected --out naming the run folder to resume, got none")

    @property
    def max_epochs(self) -> int | None:
        """The length; :attr:`default_epochs` when neither it nor ``--time-budget`` is given; ``None``:
        the budget alone stops."""
        given: int | None = getattr(self, self.length_option)
        if given is not None or self.time_budget is not None:
            return given
        return self.default_epochs


class Task(Protocol):
    """What one experiment adds to the loop: its model (built on the CPU, the loop moves it), estimator,
    ``num_examples`` (an epoch is one pass over them) and ``batch_size`` (per rank and step)."""

    estimator: catlog.Estimator
    num_examples: int
    batch_size: int

    @property
    def model(self) -> nn.Module: ...

    def loss(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss over the examples ``indices: LongTensor[b]`` and the batch's statistics for the log."""

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (``epoch`` counts from 0), and before the rest of one on resume."""

    def log_due(self, iteration: int, steps_per_epoch: int) -> bool:
        """Whether a log row follows the step that made ``iteration`` steps in all (0: before training)."""

    def evaluate(self, iteration: int, final: bool, generator: torch.Generator) -> dict[str, Any]:
        """The evaluation columns of a log row (rank 0 only); ``final``: the row that ends training."""


@dataclass(frozen=True)
class TrainState:
    """The progress of a run, checkpointed: epochs completed, steps taken, training time, the ``window``
    (each step statistic summed times its examples since the last row, and ``"examples"``), whether the
    time budget stopped the run, and the log rows."""

    epoch: int = 0
    iteration: int = 0
    train_wall_s: float = 0.0
    train_cpu_s: float = 0.0
    window: dict[str, float] | None = None
    budget_reached: bool = False
    log: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Trainer:
    """What stays fixed during a run (model and optimiser change in place, the state does not)."""

    config: TrainingOptions
    task: Task
    out: Path
    ctx: distributed.DistributedContext
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]
    clock: common.Clock


def trained_parameters(task: Task) -> list[nn.Parameter]:
    """What the optimiser steps: the model's parameters, then the estimator's learned ones."""
    return [*task.model.parameters(), *estimators.learned_parameters(task.estimator)]


def optimizer_of(config: TrainingOptions, task: Task) -> torch.optim.Optimizer:
    """Keras' Adam over :func:`trained_parameters` at ``--lr``; with ``--estimator-lr``, the
    estimator's learned parameters in a second group at that rate."""
    learned = estimators.learned_parameters(task.estimator)
    if config.estimator_lr is None or not learned:
        return KerasAdam(trained_parameters(task), lr=config.lr)
    groups: list[dict[str, Any]] = [
        {"params": list(task.model.parameters())},
        {"params": learned, "lr": config.estimator_lr},
    ]
    return KerasAdam(groups, lr=config.lr)


def init(
    config: TrainingOptions, make_task: Callable[[], Task], out: Path, ctx: distributed.DistributedContext
) -> tuple[Trainer, TrainState]:
    """The trainer of ``make_task()`` (see the module docstring); a fresh state or the checkpoint's."""
    torch.manual_seed(config.seed)
    task = make_task()
    task.model.to(device=ctx.device, dtype=config.torch_dtype)
    distributed.broadcast_parameters(task.model, ctx)
    trainer = Trainer(
        config=config,
        task=task,
        out=out,
        ctx=ctx,
        optimizer=optimizer_of(config, task),
        generators={
            "train": distributed.rank_generator(config.seed, ctx, device=ctx.device),
            "eval": torch.Generator(device=ctx.device).manual_seed(config.seed + 1),
        },
        clock=common.Clock(ctx.device),
    )
    state = load(trainer) if config.resume else TrainState()
    trainer.clock.wall_s, trainer.clock.cpu_s = state.train_wall_s, state.train_cpu_s
    return trainer, replace(state, budget_reached=over_budget(config, trainer.clock))  # a larger budget resumes


def over_budget(config: TrainingOptions, clock: common.Clock) -> bool:
    """Whether the training time on ``--budget-clock`` has reached ``--time-budget``."""
    spent = clock.cpu_s if config.budget_clock == "cpu" else clock.wall_s
    return config.time_budget is not None and spent >= config.time_budget


def save(trainer: Trainer, state: TrainState) -> None:
    """Checkpoint the run; every rank calls it (their training streams are gathered), rank 0 writes."""
    train_states = distributed.all_gather_object(trainer.generators["train"].get_state(), trainer.ctx)
    if not trainer.ctx.is_main:
        return
    run_folder.save_checkpoint(
        trainer.out / run_folder.CHECKPOINT,
        {
            "model": trainer.task.model.state_dict(),
            "estimator": [p.detach() for p in estimators.learned_parameters(trainer.task.estimator)],
            "optimizer": trainer.optimizer.state_dict(),
            "generators": {"eval": trainer.generators["eval"].get_state(), "train": train_states},
            "state": {**asdict(state), "log": list(state.log)},
        },
    )


def load(trainer: Trainer) -> TrainState:
    """Restore what :func:`save` wrote; returns the state."""
    saved = run_folder.load_checkpoint(trainer.out / run_folder.CHECKPOINT)
    train_states = saved["generators"]["train"]
    if len(train_states) != trainer.ctx.world_size:
        raise run_folder.RunFolderError(
            f"--resume: expected the checkpoint's {len(train_states)} processes, "
            f"got a world size of {trainer.ctx.world_size}"
        )
    trainer.task.model.load_state_dict(saved["model"])
    with torch.no_grad():
        for parameter, value in zip(
            estimators.learned_parameters(trainer.task.estimator), saved.get("estimator", []), strict=True
        ):
            parameter.copy_(value)
    trainer.optimizer.load_state_dict(saved["optimizer"])
    trainer.generators["eval"].set_state(saved["generators"]["eval"])
    trainer.generators["train"].set_state(train_states[trainer.ctx.rank])
    return TrainState(**{**saved["state"], "log": tuple(saved["state"]["log"])})


def gradient_spread(parameters: Iterable[nn.Parameter]) -> float:
    """The authors' "gradient variance": ``1/P sum_p Var_i(g_p[i])`` over the ``P`` parameter tensors of
    the last gradient (not an estimator's variance, which is across estimates; logged to compare with
    the paper)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return float(torch.stack([g.var(unbiased=False) for g in grads]).mean()) if grads else 0.0


def step(trainer: Trainer, state: TrainState, part: distributed.Batch) -> TrainState:
    """One optimiser step on this rank's batch ``part``; its statistics (means over the global batch)
    join the window, and every rank checks the budget."""
    config, clock, ctx, task = trainer.config, trainer.clock, trainer.ctx, trainer.task
    indices = part.indices.to(ctx.device)

    def optimise() -> dict[str, float]:
        trainer.optimizer.zero_grad(set_to_none=True)
        loss, statistics = task.loss(indices, trainer.generators["train"])
        torch.autograd.backward(loss * part.weight)
        distributed.average_gradients(trained_parameters(task), ctx)
        trainer.optimizer.step()
        return statistics

    statistics = clock.timed(optimise)
    statistics["gradient_spread"] = gradient_spread(task.model.parameters())
    budget = float(over_budget(config, clock))
    reduced = distributed.all_reduce_means({**statistics, "budget": budget}, ctx, part.indices.numel())
    count = part.global_size
    window = dict(state.window or {"examples": 0.0})
    window["examples"] += count
    for key, value in reduced.items():
        if key != "budget":
            window[key] = window.get(key, 0.0) + value * count
    return replace(
        state,
        iteration=state.iteration + 1,
        window=window,
        train_wall_s=clock.wall_s,
        train_cpu_s=clock.cpu_s,
        budget_reached=reduced["budget"] > 0,
    )


def window_means(state: TrainState) -> dict[str, float]:
    """The means of the step statistics over the examples of the window."""
    window = state.window or {"examples": 0.0}
    return {key: total / max(window["examples"], 1.0) for key, total in window.items() if key != "examples"}


def record(trainer: Trainer, state: TrainState, steps_per_epoch: int, final: bool) -> TrainState:
    """A log row (rank 0), a checkpoint (every rank), and a fresh window."""
    if trainer.ctx.is_main:
        evaluated = trainer.task.evaluate(state.iteration, final, trainer.generators["eval"])
        row = {
            "iteration": state.iteration,
            "epoch": state.iteration / steps_per_epoch,
            "train_wall_s": trainer.clock.wall_s,
            "train_cpu_s": trainer.clock.cpu_s,
            **window_means(state),
            **evaluated,
        }
        state = replace(state, log=(*state.log, row))
        common.write_csv(trainer.out / "log.csv", state.log)
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in evaluated.items() if isinstance(v, (int, float)))
        print(f"iteration {state.iteration}: {numbers}", flush=True)
    state = replace(state, window=None)
    save(trainer, state)
    return state


def finished(config: TrainingOptions, state: TrainState) -> bool:
    """The time budget was reached or ``config.max_epochs`` epochs are done."""
    return state.budget_reached or (config.max_epochs is not None and state.epoch >= config.max_epochs)


def run_epoch(trainer: Trainer, state: TrainState, bar: Any) -> TrainState:
    """The rest of the current epoch with its rows; the last step of training (the budget's, or the last
    epoch's) is followed by the final row."""
    config, ctx, task = trainer.config, trainer.ctx, trainer.task
    task.start_epoch(state.epoch)
    batches = distributed.shard(task.num_examples, task.batch_size, ctx, config.seed, state.epoch)
    for part in batches[state.iteration - state.epoch * len(batches) :]:
        state = step(trainer, state, part)
        bar.update()
        bar.set_postfix({key: f"{value:.3g}" for key, value in window_means(state).items()}, refresh=False)
        epoch_done = state.iteration == (state.epoch + 1) * len(batches)
        last = state.budget_reached or (epoch_done and finished(config, replace(state, epoch=state.epoch + 1)))
        if last or task.log_due(state.iteration, len(batches)):
            state = record(trainer, state, len(batches), final=last)
        if state.budget_reached:
            return state
    return replace(state, epoch=state.epoch + 1)


def train(
    config: TrainingOptions, make_task: Callable[[], Task], out: Path, ctx: distributed.DistributedContext
) -> tuple[Trainer, TrainState]:
    """Train ``make_task()`` as ``config`` says, writing into ``out`` (rank 0); returns trainer and final state."""
    trainer, state = init(config, make_task, out, ctx)
    if not config.resume and trainer.task.log_due(0, 1):
        state = record(trainer, state, 1, final=finished(config, state))
    bar = common.progress(desc="training", initial=state.iteration, disable=not ctx.is_main)
    while not finished(config, state):
        state = run_epoch(trainer, state, bar)
    bar.close()
    stop = f"time budget reached in epoch {state.epoch + 1}" if state.budget_reached else f"{state.epoch} epochs"
    clock = trainer.clock
    distributed.main_only(ctx)(print)(f"{stop} at iteration {state.iteration}, {clock.cpu_s:.0f} s CPU training")
    return trainer, state


def run(
    config: TrainingOptions,
    experiment: str,
    make_task: Callable[[distributed.DistributedContext, Path], Task],
    summarise: Callable[[Trainer, TrainState], dict[str, Any]],
    device: str | None = None,
) -> int:
    """A training command: in a process group on ``device`` (default ``--device``), train
    ``make_task(ctx, folder)`` in the run folder (default ``results/<experiment>-<time>``); rank 0 writes
    ``summarise(trainer, state)`` (which may print) to ``summary.json``."""
    with distributed.process_group(device or config.device) as ctx:
        common.apply_threads(config.threads)
        with run_folder.open_on_main(config, experiment, ctx, MAY_CHANGE) as out:
            trainer, state = train(config, lambda: make_task(ctx, out), out, ctx)
            if ctx.is_main:
                common.write_json(out / "summary.json", summarise(trainer, state))
    return 0
