"""One table of gradient estimators for every experiment: :data:`FAMILIES`.

A name of the vocabulary (:data:`NAMES`) is a family and, for the baselines, a budget rule
relative to IndeCateR with ``N`` samples on ``D`` variables of ``K`` categories (``D * K * N``
evaluations of ``f``): ``NAME-s`` draws ``N`` samples (equal samples), ``NAME-f`` draws
``D * K * N`` (equal evaluations, as in the paper). An experiment picks ``N`` (its
``--samples``) and :func:`make` builds the estimator; ``catlog compare`` sizes the families
itself (``Family.build``). Adding an estimator is one entry of :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import catlog


@dataclass(frozen=True)
class Budget:
    """What an experiment fixes before building an estimator: ``samples`` (``N``), ``num_variables``
    (``D``), ``num_categories`` (``K``), the Gumbel-Softmax family's ``temperature``, IndeCateR's
    ``chunk_size`` (perturbed rows per call of ``f``, ``None``: all), whether the distribution is
    ``autoregressive`` (IndeCateR becomes SCateR) and whether ``f`` takes ``one_hot`` samples
    ``[M, *B, D, K]`` instead of indices."""

    samples: int
    num_variables: int
    num_categories: int
    temperature: float = 1.0
    chunk_size: int | None = None
    autoregressive: bool = False
    one_hot: bool = False


@dataclass(frozen=True)
class Family:
    """One estimator family of the table.

    Attributes:
        label, meaning: its name in tables and plots; what it is, for ``--help``.
        build: ``(size, budget) -> estimator`` at ``size >= min_size`` with ``budget``'s temperature and options.
        rules: its names carry a budget rule (``NAME-s``, ``NAME-f``), else the name alone means ``N`` samples.
        samples_per_size: samples drawn per unit of size (DisARM: 2, one antithetic pair).
        evaluations_per_sample: evaluations of ``f`` per sample, which ``-f`` divides by (REBAR: 3).
        binary_only, relaxed: it applies to ``K = 2`` only; ``f`` must accept relaxed (float) values.
        autoregressive_label: its label on an :class:`catlog.Autoregressive`; ``None``: independent variables only.
    """

    label: str
    meaning: str
    build: Callable[[int, Budget], catlog.Estimator]
    rules: bool = True
    min_size: int = 1
    samples_per_size: int = 1
    evaluations_per_sample: int = 1
    binary_only: bool = False
    relaxed: bool = False
    autoregressive_label: str | None = None

    def applies(self, num_categories: int, relaxable: bool, autoregressive: bool) -> bool:
        """Whether it applies to ``K = num_categories``, an ``f`` that is (not) ``relaxable``, and an
        (in)dependent distribution."""
        if autoregressive and self.autoregressive_label is None:
            return False
        return (num_categories == 2 or not self.binary_only) and (relaxable or not self.relaxed)

    def title(self, autoregressive: bool) -> str:
        """:attr:`label`, or :attr:`autoregressive_label` on an autoregressive distribution."""
        return (self.autoregressive_label or self.label) if autoregressive else self.label

    def cost(self, size: int, budget: Budget) -> catlog.Cost:
        """Samples and evaluations per estimate at ``size`` on ``budget``'s ``D``, ``K``."""
        return self.build(size, budget).cost(budget.num_variables, budget.num_categories)


def _catlog(
    per_variable: bool = False, control_variate: Callable[[], catlog.ControlVariate | str] | None = None
) -> Callable[[int, Budget], catlog.Estimator]:
    """IndeCateR (SCateR on an autoregressive distribution) with ``n`` samples and a fresh
    ``control_variate()`` per estimator (a ``Fitted`` fit is the estimator's own)."""

    def make(n: int, b: Budget) -> catlog.Estimator:
        family = catlog.SCateR if b.autoregressive else catlog.IndeCateR
        correction = None if control_variate is None else control_variate()
        return family(
            n, per_variable=per_variable, chunk_size=b.chunk_size, one_hot=b.one_hot, control_variate=correction
        )

    return make


class Surrogate(nn.Module):
    """RELAX's default surrogate: an MLP on the flattened relaxed one-hot, ``[M, *B, D, K] -> [M, *B]``,
    ``c(z) = w_2^T tanh(W_1 vec(z) + b_1) + b_2`` with :data:`SURROGATE_WIDTH` hidden units.

    Its parameters stay float32 on the device of their first input; inputs are cast to them and the
    output back to the input's dtype.
    """

    def __init__(self, num_variables: int, num_categories: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(num_variables * num_categories, SURROGATE_WIDTH)
        self.output = nn.Linear(SURROGATE_WIDTH, 1)

    def forward(self, relaxed: torch.Tensor) -> torch.Tensor:
        weight = self.hidden.weight
        if weight.device != relaxed.device:
            self.to(relaxed.device)
        hidden = torch.tanh(self.hidden(relaxed.flatten(-2).to(weight.dtype)))
        value: torch.Tensor = self.output(hidden).squeeze(-1)
        return value.to(relaxed.dtype)


def learned_parameters(estimator: catlog.Estimator) -> list[nn.Parameter]:
    """The parameters an estimator learns by its own variance gradient (REBAR, RELAX), for the
    training loop's optimiser; empty for the others."""
    if isinstance(estimator, (catlog.REBAR, catlog.RELAX)):
        return list(estimator.parameters())
    return []


SURROGATE_WIDTH = 64
"""Hidden units of :class:`Surrogate`."""
# Conditional Gumbel vectors per sample that Gumbel-Rao averages its relaxed backward over.
GUMBEL_RAO_SAMPLES = 10

FAMILIES: dict[str, Family] = {
    "indecater": Family(
        "IndeCateR",
        "IndeCateR, N samples shared by all variables",
        _catlog(),
        rules=False,
        autoregressive_label="SCateR",
    ),
    "indecater-pv": Family(
        "IndeCateR-PV",
        "IndeCateR, N samples per variable",
        _catlog(per_variable=True),
        rules=False,
        autoregressive_label="SCateR-PV",
    ),
    "indecater-taylor": Family(
        "IndeCateR + Taylor",
        "IndeCateR with the Taylor control variate (Hessian-vector products of relaxed f)",
        _catlog(control_variate=lambda: "taylor"),
        rules=False,
        relaxed=True,
    ),
    "indecater-fitted": Family(
        "IndeCateR + Fitted",
        "IndeCateR with interactions fitted on its own rows (leave one out, carried over)",
        _catlog(control_variate=catlog.Fitted),
        rules=False,
        min_size=2,
        autoregressive_label="SCateR + Fitted",
    ),
    "reinforce": Family(
        "REINFORCE", "REINFORCE", lambda n, b: catlog.REINFORCE(n, one_hot=b.one_hot), autoregressive_label="REINFORCE"
    ),
    "rloo": Family(
        "RLOO",
        "REINFORCE leave-one-out",
        lambda n, b: catlog.RLOO(n, one_hot=b.one_hot),
        min_size=2,
        autoregressive_label="RLOO",
    ),
    "scater": Family(
        "SCateR",
        "SCateR, N base samples shared by all variables (IndeCateR on independent variables)",
        lambda n, b: catlog.SCateR(n, chunk_size=b.chunk_size, one_hot=b.one_hot),
        rules=False,
        autoregressive_label="SCateR",
    ),
    "scater-pv": Family(
        "SCateR-PV",
        "SCateR, N base samples per variable",
        lambda n, b: catlog.SCateR(n, per_variable=True, chunk_size=b.chunk_size, one_hot=b.one_hot),
        rules=False,
        autoregressive_label="SCateR-PV",
    ),
    "grpo": Family(
        "GRPO",
        "GRPO's group-normalised advantage (f - mean) / std, biased",
        lambda n, b: catlog.GRPO(n, one_hot=b.one_hot),
        min_size=2,
        autoregressive_label="GRPO",
    ),
    "gs": Family(
        "Gumbel-Softmax",
        "Gumbel-Softmax, relaxed samples",
        lambda n, b: catlog.GumbelSoftmax(n, b.temperature, straight_through=False, one_hot=b.one_hot),
        relaxed=True,
    ),
    "gs-st": Family(
        "ST Gumbel-Softmax",
        "straight-through Gumbel-Softmax",
        lambda n, b: catlog.GumbelSoftmax(n, b.temperature, straight_through=True, one_hot=b.one_hot),
        relaxed=True,
    ),
    "disarm": Family(
        "DisARM",
        "DisARM, N/2 antithetic pairs (K = 2 only)",
        lambda n, b: catlog.DisARM(n, one_hot=b.one_hot),
        samples_per_size=2,
        binary_only=True,
    ),
    "reinmax": Family(
        "ReinMax",
        "ReinMax straight-through",
        lambda n, b: catlog.ReinMax(n, b.temperature, one_hot=b.one_hot),
        relaxed=True,
    ),
    "gumbel-rao": Family(
        f"Gumbel-Rao ({GUMBEL_RAO_SAMPLES})",
        f"Gumbel-Rao straight-through, {GUMBEL_RAO_SAMPLES} Rao samples",
        lambda n, b: catlog.GumbelRao(n, GUMBEL_RAO_SAMPLES, b.temperature, one_hot=b.one_hot),
        relaxed=True,
    ),
    "rebar": Family(
        "REBAR",
        "REBAR, learned temperature and scale of the relaxed f (3 evaluations per sample)",
        lambda n, b: catlog.REBAR(n, one_hot=b.one_hot),
        evaluations_per_sample=3,
        relaxed=True,
    ),
    "relax": Family(
        "RELAX",
        "RELAX with an MLP surrogate on the relaxed one-hot",
        lambda n, b: catlog.RELAX(n, Surrogate(b.num_variables, b.num_categories), one_hot=b.one_hot),
        relaxed=True,
    ),
}
RULES: dict[str, tuple[str, Callable[[Budget], int]]] = {
    "s": ("N samples (equal samples)", lambda b: b.samples),
    "f": ("D*K*N samples (equal evaluations)", lambda b: b.num_variables * b.num_categories * b.samples),
}
NAMES: tuple[str, ...] = tuple(
    name
    for base, family in FAMILIES.items()
    for name in ((f"{base}-{rule}" for rule in RULES) if family.rules else (base,))
)


def parse(name: str) -> tuple[Family, Callable[[Budget], int]]:
    """The family of ``name`` (one of :data:`NAMES`) and its samples under a budget.

    Raises:
        ValueError: ``name`` is not in the vocabulary.
    """
    if name in FAMILIES and not FAMILIES[name].rules:
        return FAMILIES[name], RULES["s"][1]
    base, _, rule = name.rpartition("-")
    if base not in FAMILIES or not FAMILIES[base].rules or rule not in RULES:
        raise ValueError(f"estimator: expected one of {', '.join(NAMES)}, got {name!r}")
    return FAMILIES[base], RULES[rule][1]


# The names whose estimators take an autoregressive distribution (catlog.Autoregressive).
AUTOREGRESSIVE: tuple[str, ...] = tuple(name for name in NAMES if parse(name)[0].autoregressive_label is not None)


def make(name: str, budget: Budget) -> catlog.Estimator:
    """The estimator called ``name`` (one of :data:`NAMES`) under ``budget``.

    Raises:
        ValueError: ``name`` is not in the vocabulary.
    """
    family, samples = parse(name)
    per_size = family.samples_per_size * (family.evaluations_per_sample if name.endswith("-f") else 1)
    return family.build(max(1, samples(budget) // per_size), budget)


def describe(names: tuple[str, ...] = NAMES) -> str:
    """One line per name, ``name: meaning``, for ``--help`` (IndeCateR with N samples is the reference)."""
    lines = []
    for name in names:
        family, _ = parse(name)
        rule = "" if not family.rules else f", {RULES[name.rpartition('-')[2]][0]}"
        if name.endswith("-f") and family.evaluations_per_sample > 1:
            rule = rule.replace("D*K*N samples", f"D*K*N/{family.evaluations_per_sample} samples")
        lines.append(f"  {name}: {family.meaning}{rule}")
    return "estimators (N = --samples; D variables of K categories):\n" + "\n".join(lines)
