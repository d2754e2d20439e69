"""One vocabulary of gradient estimators for every experiment.

A name is a method and, for the baselines, a budget rule relative to IndeCateR
with ``N`` samples on ``D`` variables of ``K`` categories (``D * K * N`` evaluations of ``f``):

- ``-s`` (equal samples): the baseline draws ``N`` samples;
- ``-f`` (equal evaluations, as in the paper): the baseline draws ``D * K * N`` samples.

Each experiment picks ``N`` (its ``--samples``) and gives ``D`` and ``K``; :func:`make`
builds the estimator. Adding an estimator is one entry of :data:`METHODS` (IndeCateR-like
methods without a rule) or of :data:`BASELINES` (methods that get the ``-s``/``-f`` pair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import catlog


@dataclass(frozen=True)
class Budget:
    """What an experiment fixes before building an estimator.

    Attributes:
        samples: ``N``, IndeCateR's samples; a ``-s`` baseline's samples.
        num_variables: ``D``, the categorical variables of one estimate.
        num_categories: ``K``, the categories of each variable.
        temperature: relaxation temperature of the Gumbel-Softmax family.
        chunk_size: IndeCateR's perturbed rows per call of ``f`` (``None``: all at once).
    """

    samples: int
    num_variables: int
    num_categories: int
    temperature: float = 1.0
    chunk_size: int | None = None


@dataclass(frozen=True)
class Family:
    """One estimator family: what it is (for ``--help``) and how to build it with ``n`` samples."""

    meaning: str
    build: Callable[[int, Budget], catlog.Estimator]


# Conditional Gumbel vectors per sample that Gumbel-Rao averages its relaxed backward over.
GUMBEL_RAO_SAMPLES = 10

# Methods whose name is the whole name: they take N samples.
METHODS: dict[str, Family] = {
    "indecater": Family(
        "IndeCateR, N samples shared by all variables", lambda n, b: catlog.IndeCateR(n, chunk_size=b.chunk_size)
    ),
    "indecater-pv": Family(
        "IndeCateR, N samples per variable",
        lambda n, b: catlog.IndeCateR(n, per_variable=True, chunk_size=b.chunk_size),
    ),
    "scater": Family(
        "SCateR, N base samples shared by all variables (IndeCateR on independent variables)",
        lambda n, b: catlog.SCateR(n, chunk_size=b.chunk_size),
    ),
    "scater-pv": Family(
        "SCateR, N base samples per variable", lambda n, b: catlog.SCateR(n, per_variable=True, chunk_size=b.chunk_size)
    ),
}
# Baselines: each gives NAME-s (N samples) and NAME-f (D*K*N samples).
BASELINES: dict[str, Family] = {
    "reinforce": Family("REINFORCE", lambda n, b: catlog.REINFORCE(n)),
    "rloo": Family("REINFORCE leave-one-out", lambda n, b: catlog.RLOO(n)),
    "grpo": Family("GRPO's group-normalised advantage (f - mean) / std, biased", lambda n, b: catlog.GRPO(n)),
    "gs": Family(
        "Gumbel-Softmax, relaxed samples", lambda n, b: catlog.GumbelSoftmax(n, b.temperature, straight_through=False)
    ),
    "gs-st": Family(
        "straight-through Gumbel-Softmax", lambda n, b: catlog.GumbelSoftmax(n, b.temperature, straight_through=True)
    ),
    "disarm": Family("DisARM, N/2 antithetic pairs (K = 2 only)", lambda n, b: catlog.DisARM(max(1, n // 2))),
    "reinmax": Family("ReinMax straight-through", lambda n, b: catlog.ReinMax(n, b.temperature)),
    "gumbel-rao": Family(
        f"Gumbel-Rao straight-through, {GUMBEL_RAO_SAMPLES} Rao samples",
        lambda n, b: catlog.GumbelRao(n, GUMBEL_RAO_SAMPLES, b.temperature),
    ),
}
RULES: dict[str, tuple[str, Callable[[Budget], int]]] = {
    "s": ("N samples (equal samples)", lambda b: b.samples),
    "f": ("D*K*N samples (equal evaluations)", lambda b: b.num_variables * b.num_categories * b.samples),
}
NAMES: tuple[str, ...] = (*METHODS, *(f"{base}-{rule}" for base in BASELINES for rule in RULES))
# The names whose estimators take an autoregressive distribution (catlog.Autoregressive).
AUTOREGRESSIVE: tuple[str, ...] = (
    "scater",
    "scater-pv",
    *(f"{base}-{rule}" for base in ("reinforce", "rloo", "grpo") for rule in RULES),
)


def make(name: str, budget: Budget) -> catlog.Estimator:
    """The estimator called ``name`` (one of :data:`NAMES`) under ``budget``.

    Raises:
        ValueError: ``name`` is not in the vocabulary.
    """
    if name in METHODS:
        return METHODS[name].build(budget.samples, budget)
    base, _, rule = name.rpartition("-")
    if base not in BASELINES or rule not in RULES:
        raise ValueError(f"estimator: expected one of {', '.join(NAMES)}, got {name!r}")
    return BASELINES[base].build(RULES[rule][1](budget), budget)


def describe(names: tuple[str, ...] = NAMES) -> str:
    """One line per name, ``name: meaning``, for ``--help`` (IndeCateR with N samples is the reference)."""
    lines = []
    for name in names:
        if name in METHODS:
            lines.append(f"  {name}: {METHODS[name].meaning}")
        else:
            base, _, rule = name.rpartition("-")
            lines.append(f"  {name}: {BASELINES[base].meaning}, {RULES[rule][0]}")
    return "estimators (N = --samples; D variables of K categories):\n" + "\n".join(lines)
