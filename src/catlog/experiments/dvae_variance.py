"""``catlog dvae-variance``: the variance of several estimators at the parameters of a ``catlog dvae``
run's checkpoint (checkpoints of every version load: only their model is read).

The measurement of training (:mod:`catlog.experiments.problems.dvae`: ``--repeats`` encoder-gradient
estimates on the first training batch, variance per gradient entry), but every estimator at the
same parameters. Writes ``variance_at_checkpoint.csv`` into the run folder: per estimator its
samples, variance and CPU seconds per estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catlog.experiments import common, estimators, run_folder
from catlog.experiments.dvae_model import DEFAULT_SAMPLES, DiscreteVAE, load_split, make_estimator
from catlog.experiments.options import DTYPES, Command, OptionError, Options, option
from catlog.experiments.problems import variance_per_entry
from catlog.experiments.problems.dvae import problem as dvae_problem

ESTIMATORS: tuple[str, ...] = ("indecater", "rloo-s", "rloo-f", "gs-st-s", "gs-st-f", "disarm-s")


def variance_at_checkpoint(
    run: Path, names: list[str], repeats: int, seed: int = 0, data_dir: Path | None = None
) -> list[dict[str, Any]]:
    """The rows of ``variance_at_checkpoint.csv`` for the estimators ``names`` (see the module)."""
    config = json.loads((run / run_folder.CONFIG).read_text())
    dtype = DTYPES[config["dtype"]]
    model = DiscreteVAE(config["latents"], config["categories"]).to(dtype=dtype)
    run_folder.load_model(run / run_folder.CHECKPOINT, model)
    data_dir = data_dir if data_dir is not None else config["data_dir"] and Path(config["data_dir"])
    cache_dir = config.get("cache_dir") and Path(config["cache_dir"])  # absent from older runs
    split = load_split(config["dataset"], data_dir, torch.device("cpu"), dtype, cache_dir)
    images = split["train"][: config["train_limit"]][: config["batch_size"]]
    generator = torch.Generator().manual_seed(seed)
    problem = dvae_problem(model, images)
    samples = config.get("samples") or DEFAULT_SAMPLES
    rows = []
    for name in names:
        estimator = make_estimator(name, config["latents"], config["categories"], samples, config["chunk_size"])
        clock = common.Clock()
        estimates = clock.timed(lambda: problem.gradients(estimator, repeats, generator))  # noqa: B023 (called at once)
        rows.append(
            {
                "estimator": name,
                "samples": estimator.cost(config["latents"], config["categories"]).samples,
                "variance": variance_per_entry(estimates),
                "cpu_s_per_estimate": clock.cpu_s / repeats,
            }
        )
    return rows


@dataclass(frozen=True, kw_only=True)
class VarianceConfig(Options):
    """Settings of ``catlog dvae-variance``."""

    run: Path = option(help="run folder of catlog dvae")
    estimators: tuple[str, ...] = option(
        ESTIMATORS, "estimators to measure (names below)", choices=estimators.NAMES, metavar="NAME"
    )
    repeats: int = option(10, "gradient estimates per estimator", minimum=2)
    data_dir: Path | None = option(None, "existing data folder", default_text="the run's")
    seed: int = option(0, "random seed")
    threads: int | None = option(None, "torch CPU threads", minimum=1, default_text="torch's choice")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (run_folder.CONFIG, run_folder.CHECKPOINT):
            if not (self.run / name).is_file():
                raise OptionError("run", f"expected a folder of `catlog dvae` holding {name}, got {str(self.run)!r}")


def run(config: VarianceConfig) -> int:
    """The ``catlog dvae-variance`` command: writes ``variance_at_checkpoint.csv`` into the run folder."""
    common.apply_threads(config.threads)
    rows = variance_at_checkpoint(config.run, list(config.estimators), config.repeats, config.seed, config.data_dir)
    path = common.write_csv(config.run / "variance_at_checkpoint.csv", rows)
    for row in rows:
        print(f"{row['estimator']:>10}  variance {row['variance']:.3e}  {row['cpu_s_per_estimate']:.3f} s CPU/estimate")
    print(f"written to {path}")
    return 0


COMMAND = Command(
    "dvae-variance",
    help="variance of several estimators at the parameters of a dvae run's checkpoint",
    description=__doc__ or "",
    config=VarianceConfig,
    run=run,
)
