"""``catlog dvae``: train the discrete VAE of the paper's figure 3 with one estimator.

The paper's section 6.3 protocol (docs/results.md section 3): Adam at 1e-4, batches of 100; MNIST
and Omniglot binarised at 0.5, Fashion-MNIST grey levels as targets; validation the first 1000
test images, test the next 9000. Each ``--log-every`` iterations a row of ``log.csv`` gets the
running train negative ELBO, the validation one (``--eval-samples`` latent samples per image) and,
every ``--variance-every``, the estimator variance per gradient entry
(:func:`~catlog.experiments.problems.variance_per_entry`) of ``--variance-repeats`` encoder
gradients on the first ``--batch-size`` training images. Relaxed estimators anneal their
temperature per epoch. Loop, ``checkpoint.pt`` and ``--resume``: :mod:`~catlog.experiments.training`;
``summary.json`` at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

import catlog
from catlog.experiments import data, estimators, training
from catlog.experiments.dvae_model import (
    DATASETS,
    DEFAULT_SAMPLES,
    TEST_SIZE,
    DiscreteVAE,
    evaluate_negative_elbo,
    load_split,
    make_estimator,
    negative_elbo,
)
from catlog.experiments.options import Command, check_applies, check_at_least, check_multiple, option
from catlog.experiments.problems import variance_per_entry
from catlog.experiments.problems.dvae import problem as dvae_problem

# The paper's five, DisARM (the binary VAE's standard unbiased baseline), then the rest of the vocabulary.
ESTIMATORS: tuple[str, ...] = ("indecater", "rloo-s", "rloo-f", "gs-st-s", "gs-st-f", "disarm-s", "reinforce-s")


@dataclass(frozen=True, kw_only=True)
class DvaeConfig(training.TrainingOptions, data.DataOptions):
    """Settings of ``catlog dvae``."""

    default_epochs: ClassVar[int] = 10
    estimator: str = option("indecater", "gradient estimator (names below)", choices=estimators.NAMES, metavar="NAME")
    dataset: str = option("mnist", "training images", choices=DATASETS)
    samples: int = option(DEFAULT_SAMPLES, "N (-f estimators take D*K*N samples)", minimum=1)
    latents: int = option(200, "latent variables D", minimum=1)
    categories: int = option(2, "categories K of each latent (2: Bernoulli)", minimum=2)
    epochs: int | None = training.epochs_option(default_epochs)
    lr: float = option(1e-4, "Adam learning rate", above=0)
    batch_size: int = option(100, "images per step", minimum=1)
    chunk_size: int | None = option(
        10,
        "IndeCateR: perturbed sample rows per decoder call, each a whole batch (10: "
        "1000 latent vectors at batch 100; bounds peak memory at no cost in speed)",
        minimum=1,
    )
    log_every: int = option(100, "iterations between log rows", minimum=1)
    eval_samples: int = option(
        10, "latent samples per image for validation/test -ELBO (the reference used 1000)", minimum=1
    )
    variance_every: int = option(
        100, "iterations between variance measurements, a multiple of --log-every (0: never)", minimum=0
    )
    variance_repeats: int = option(10, "gradient estimates per variance measurement", minimum=2)
    cache_dir: Path | None = option(
        None, "folder for decoded Omniglot tensors", default_text="$CATLOG_CACHE, else <data folder>/decoded"
    )
    train_limit: int | None = option(None, "use only the first N training images", minimum=1, default_text="all")
    eval_limit: int | None = option(
        None, "use only the first N validation and test images", minimum=1, default_text="all"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least("--samples", self.samples, estimators.parse(self.estimator)[0].min_size)
        check_multiple("--variance-every", self.variance_every, "--log-every", self.log_every)
        estimator = make_estimator(self.estimator, self.latents, self.categories, self.samples, self.chunk_size)
        check_applies("--estimator", self.estimator, estimator, self.latents, self.categories)


class DvaeTask:
    """The discrete VAE as a :class:`~catlog.experiments.training.Task`: loss, temperature schedule,
    log rows (validation -ELBO, estimator variance, temperature).

    Args:
        config: the run's settings.
        device: where the images are loaded to (the splits of :func:`load_split`, cut to the limits).
    """

    def __init__(self, config: DvaeConfig, device: torch.device) -> None:
        self.started = time.perf_counter()
        self.config = config
        splits = load_split(config.dataset, config.data_dir, device, config.torch_dtype, config.cache_dir)
        self.splits = {
            "train": splits["train"][: config.train_limit],
            "val": splits["val"][: config.eval_limit],
            "test": splits["test"][: config.eval_limit],
        }
        self.model = DiscreteVAE(config.latents, config.categories)
        self.estimator = make_estimator(
            config.estimator, config.latents, config.categories, config.samples, config.chunk_size
        )
        self.num_examples, self.batch_size = self.splits["train"].shape[0], config.batch_size

    def loss(self, indices: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch mean of :func:`~catlog.experiments.dvae_model.negative_elbo`; logged as ``train_neg_elbo``."""
        loss = negative_elbo(self.model, self.estimator, self.splits["train"][indices], generator).mean()
        return loss, {"train_neg_elbo": float(loss.detach())}

    def start_epoch(self, epoch: int) -> None:
        """Relaxation temperature ``exp(-0.01 * epoch)`` clipped to [0.1, 1], for the estimators that take one."""
        if isinstance(self.estimator, catlog.Relaxed):
            self.estimator.temperature = min(1.0, max(0.1, math.exp(-0.01 * epoch)))

    def log_due(self, iteration: int, steps_per_epoch: int) -> bool:
        """Every ``--log-every`` iterations (none before training)."""
        return 0 < iteration and iteration % self.config.log_every == 0

    def evaluate(self, iteration: int, final: bool, generator: torch.Generator) -> dict[str, Any]:
        """``val_neg_elbo``; ``variance`` every ``--variance-every`` iterations and at the end; ``temperature``."""
        config = self.config
        row: dict[str, Any] = {
            "val_neg_elbo": evaluate_negative_elbo(self.model, self.splits["val"], config.eval_samples, generator),
            "variance": "",
            "temperature": self.estimator.temperature if isinstance(self.estimator, catlog.Relaxed) else "",
        }
        if config.variance_every > 0 and (final or iteration % config.variance_every == 0):
            batch = self.splits["train"][: config.batch_size]
            estimates = dvae_problem(self.model, batch).gradients(self.estimator, config.variance_repeats, generator)
            row["variance"] = variance_per_entry(estimates)
        return row


def summarise(trainer: training.Trainer, state: training.TrainState) -> dict[str, Any]:
    """The summary of a finished run: final log values and train/test negative ELBO (printed)."""
    task = trainer.task
    assert isinstance(task, DvaeTask)
    config, splits, log = task.config, task.splits, state.log

    def whole_negative_elbo(images: torch.Tensor) -> float:
        return evaluate_negative_elbo(task.model, images, config.eval_samples, trainer.generators["eval"])

    summary = {
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
        "train_neg_elbo": whole_negative_elbo(splits["train"][:TEST_SIZE][: config.eval_limit]),
        "test_neg_elbo": whole_negative_elbo(splits["test"]),
        "session_wall_s": time.perf_counter() - task.started,
    }
    elbos = f"test -ELBO {summary['test_neg_elbo']:.2f}, train -ELBO {summary['train_neg_elbo']:.2f}"
    print(f"{elbos}; results in {trainer.out}")
    return summary


def run(config: DvaeConfig) -> int:
    """The ``catlog dvae`` command (also under ``torchrun``): checks the data, then trains."""
    data.check_dataset(config.dataset, config.data_dir)
    make_task = lambda ctx, out: DvaeTask(config, ctx.device)  # noqa: E731
    return training.run(config, f"dvae-{config.dataset}-{config.estimator}", make_task, summarise)


COMMAND = Command(
    "dvae",
    help="train the discrete VAE (paper figure 3) with one estimator",
    description=__doc__ or "",
    config=DvaeConfig,
    run=run,
)
