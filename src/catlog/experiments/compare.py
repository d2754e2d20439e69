"""``catlog compare``: every estimator on a suite of problems, at equal samples, evaluations and time.

The reference is the CatLog-Derivative estimator with ``N = --samples`` samples
(IndeCateR on independent logits, SCateR on the autoregressive ones). Every other
estimator is measured at three sizes:

- **equal samples**: the largest size whose ``cost(D, K).samples`` is at most ``N``
  (DisARM: ``N / 2`` pairs; IndeCateR per variable draws ``D N`` samples and has no row);
- **equal evaluations**: the largest size whose ``cost(D, K).evaluations`` is at most the
  reference's ``N (1 + D (K - 1))``;
- **equal time**: the size whose measured CPU time per estimate matches the reference's.
  Every size is timed in calls that alternate with the reference's, so that both see the
  same machine load, and only the ratio of the two medians is used (``t/t_ref``); the
  ratios are measured on a ladder of sizes (x4 steps from the equal-evaluation size, at
  most ``--max-evaluations`` evaluations; rows that reach it are marked ``capped``),
  interpolated log-log to ratio 1, and the chosen size is then measured like the others.

The problems are :mod:`catlog.experiments.problems`'s and the estimators the families of
:data:`catlog.experiments.estimators.FAMILIES`. Each measurement: ``R`` independent gradient
estimates at fixed parameters (``Problem.gradients``) give, by :mod:`catlog.measure`'s
conventions, the variance ``sum_i Var_r g_ri`` and, where the exact gradient is known, the
squared bias ``sum_i (mean_r g_ri - g*_i)^2`` beside its noise floor ``variance / R``
(what an unbiased estimator shows); the median CPU time of one estimate (value and
backward pass, separately timed calls; wall time on CUDA, as :func:`catlog.interleaved_ms`
times) and its ratio to the reference's; samples and
evaluations from ``cost()``; and the work-normalised variance ``variance x CPU ms``.

Outputs: ``compare.json``, ``compare.csv``, ``compare.txt`` (the printed tables) and
``compare-PROBLEM.png`` per problem (7 x 3.5 inches: variance against evaluations and
against CPU time relative to the reference, log-log, the legend outside the axes).
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

import catlog
from catlog.experiments import common, data, estimators, plotting, run_folder
from catlog.experiments.estimators import Budget, Family
from catlog.experiments.options import Command, RunOptions, config_json, option, parse_size, show_size
from catlog.experiments.problems import Problem, addition, autoregressive, binary, dvae, figure1, quadratic, structured
from catlog.experiments.problems.problem import FIT_ESTIMATES

Builder = Callable[["CompareConfig", torch.device, torch.dtype], Problem]
BUILDERS: dict[str, Builder] = {
    "fig1": lambda c, device, dtype: figure1.problem(
        *c.fig1, "nonseparable", c.seed, device, dtype, title="fig. 1 non-separable f, D = {}, K = {}".format(*c.fig1)
    ),
    "binary": lambda c, device, dtype: binary.hamming(c.binary_variables, c.seed, device, dtype),
    "quadratic": lambda c, device, dtype: quadratic.problem(*c.quadratic, c.seed, device, dtype),
    "autoregressive": lambda c, device, dtype: autoregressive.problem(c.seed, device, dtype),
    "dvae": lambda c, device, dtype: dvae.mnist(
        c.dvae_checkpoint, c.dvae_steps, c.dvae_batch, c.data_dir, c.seed, device, dtype
    ),
    "addition": lambda c, device, dtype: addition.problem(
        c.addition_digits, c.addition_batch, c.data_dir, c.seed, device, dtype
    ),
    "frozenlake": lambda c, device, dtype: structured.frozenlake(0, c.seed, device, dtype),
    "frozenlake-trained": lambda c, device, dtype: structured.frozenlake(c.policy_steps, c.seed, device, dtype),
    "arithmetic": lambda c, device, dtype: structured.arithmetic(0, c.seed, device, dtype),
    "arithmetic-trained": lambda c, device, dtype: structured.arithmetic(c.policy_steps, c.seed, device, dtype),
}
"""How each problem is built from the config."""
PROBLEMS: tuple[str, ...] = tuple(BUILDERS)
MODEL_PROBLEMS: tuple[str, ...] = ("dvae", "addition")
"""The problems measured with ``--model-repeats`` estimates (the others: ``--repeats``)."""
# Names of the experiments' vocabulary (:mod:`catlog.experiments.estimators`): its methods and its
# baselines without a budget suffix, since this command sets every size itself.
ESTIMATORS: tuple[str, ...] = (
    *("indecater", "indecater-pv", "indecater-taylor", "indecater-fitted", "reinforce", "rloo", "grpo", "disarm"),
    *("gs-st", "reinmax", "gumbel-rao", "rebar", "relax"),
)
SETTINGS: tuple[str, ...] = ("equal samples", "equal evaluations", "equal time")
COLUMNS: tuple[str, ...] = (
    *("problem", "setting", "estimator", "size", "samples", "evaluations", "repeats", "variance", "sq_bias"),
    *("sq_bias_floor", "cpu_ms", "time_ratio", "variance_x_cpu_ms", "capped"),
)


@dataclass(frozen=True, kw_only=True)
class CompareConfig(RunOptions, data.DataOptions):
    """Everything ``catlog compare`` computes from (the command line builds it; nothing else reads argparse)."""

    problems: tuple[str, ...] = option(PROBLEMS, "problems to run", choices=PROBLEMS)
    estimators: tuple[str, ...] = option(
        ESTIMATORS, "estimators to compare (the reference indecater is always measured)", choices=ESTIMATORS
    )
    samples: int = option(2, "N of the reference IndeCateR/SCateR and of the equal-samples rows", minimum=1)
    repeats: int = option(200, "estimates per variance on every problem but dvae and addition", minimum=2)
    model_repeats: int = option(30, "estimates per variance on dvae and addition", minimum=2)
    timing_repeats: int = option(7, "timed single estimates per size, after one warm-up", minimum=1)
    timing_seconds: float = option(0.2, "...and more of them until they took this much CPU", minimum=0)
    max_evaluations: int = option(20_000, "largest evaluations per estimate tried for equal time", minimum=1)
    temperature: float = option(1.0, "temperature of the relaxed estimators", above=0)
    fig1: tuple[int, int] = option(
        (6, 10), "size of the figure-1 problem", parse=parse_size, show=show_size, metavar="DxK"
    )
    binary_variables: int = option(12, "D of the binary problem", minimum=1)
    quadratic: tuple[int, int] = option(
        (8, 3), "size of the quadratic problem", parse=parse_size, show=show_size, metavar="DxK"
    )
    fit_steps: int = option(100, "fitting steps of the learned control variates before measuring", minimum=0)
    dvae_checkpoint: Path | None = option(
        None, "checkpoint.pt of a `catlog dvae` run (D = 200, K = 2)", default_text="train here"
    )
    dvae_steps: int = option(300, "RLOO(2) training steps of the DVAE without a checkpoint", minimum=0)
    dvae_batch: int = option(10, "validation images in the DVAE gradient", minimum=1)
    addition_digits: int = option(4, "D of the addition problem", minimum=1)
    addition_batch: int = option(10, "test sequences in the addition gradient", minimum=1)
    policy_steps: int = option(
        300, "most SCateR(4) steps that train the -trained policies (they stop at 0.2 success)", minimum=1
    )
    quick: bool = option(False, "tiny sizes and few repeats (a smoke test, seconds); overrides those options")


QUICK: dict[str, Any] = {
    "samples": 2,
    "repeats": 8,
    "model_repeats": 3,
    "timing_repeats": 2,
    "timing_seconds": 0.0,
    "max_evaluations": 200,
    "fig1": (3, 3),
    "binary_variables": 4,
    "quadratic": (3, 3),
    "fit_steps": 2,
    "dvae_steps": 2,
    "dvae_batch": 2,
    "addition_batch": 2,
    "policy_steps": 5,
}


def applicable(names: Sequence[str], problem: Problem) -> dict[str, Family]:
    """The families of ``names`` (:data:`catlog.experiments.estimators.FAMILIES`) that apply to ``problem``:
    DisARM needs ``K = 2``, the relaxed estimators an ``f`` that accepts relaxed values, and an
    autoregressive problem the families that take one (``indecater`` is then SCateR)."""
    families = {name: estimators.FAMILIES[name] for name in names}
    kind = (problem.num_categories, problem.relaxable, problem.autoregressive)
    return {name: family for name, family in families.items() if family.applies(*kind)}


def largest_size(family: Family, budget: Budget, field: Literal["samples", "evaluations"], limit: int) -> int | None:
    """The largest size with ``cost(D, K).<field> <= limit`` (:func:`catlog.measure.largest_size`), or ``None``."""
    return catlog.largest_size(
        lambda size: family.build(size, budget), budget.num_variables, budget.num_categories, limit, field=field
    )


class Measurement(NamedTuple):
    """One estimator at one size: repeated gradients' statistics and its time per estimate."""

    size: int
    samples: int
    evaluations: int
    variance: float
    sq_bias: float | None
    sq_bias_floor: float | None
    cpu_ms: float
    time_ratio: float


class Runner:
    """Measures families on one problem against a ``reference`` family at ``reference_size``,
    each ``(name, size)`` at most once, with ``repeats`` estimates per variance."""

    def __init__(
        self,
        problem: Problem,
        config: CompareConfig,
        device: torch.device,
        reference: Family,
        reference_size: int,
        repeats: int,
    ) -> None:
        self.problem, self.config, self.device, self.repeats = problem, config, device, repeats
        self.budget = problem.budget(temperature=config.temperature)
        self.reference = ("indecater", reference, reference_size)
        self.measured: dict[tuple[str, int], Measurement] = {}
        self.built: dict[tuple[str, int], catlog.Estimator] = {}
        self.timed: dict[tuple[str, int], tuple[float, float]] = {}

    def generator(self, name: str, size: int, purpose: str) -> torch.Generator:
        """A generator seeded from ``--seed`` and what it is for (order-independent)."""
        key = zlib.crc32(f"{self.problem.name}/{name}/{size}/{purpose}".encode())
        return torch.Generator(device=self.device).manual_seed(self.config.seed * 1_000_003 + key)

    def time(self, name: str, family: Family, size: int) -> tuple[float, float]:
        """The median ms of one estimate (value and backward pass) and its ratio to the reference's, timed
        in calls alternating with the reference's (:func:`catlog.interleaved_ms`: CPU time on a CPU): at
        least ``timing_repeats`` rounds and until they took ``timing_seconds``."""
        if (name, size) not in self.timed:
            contenders = [(name, family, size)]
            if contenders[0] != self.reference:
                contenders.append(self.reference)
            medians = catlog.interleaved_ms(
                [self.estimate_once(*contender) for contender in contenders],
                rounds=self.config.timing_repeats,
                min_seconds=self.config.timing_seconds,
                device=self.device,
            )
            self.timed[name, size] = (medians[0], medians[0] / medians[-1])
        return self.timed[name, size]

    def build(self, name: str, family: Family, size: int) -> catlog.Estimator:
        """``family``'s estimator at ``size``, built once, its learned control variate first fitted by
        ``--fit-steps`` steps (:meth:`Problem.fit`)."""
        if (name, size) not in self.built:
            estimator = family.build(size, self.budget)
            self.problem.fit(estimator, self.config.fit_steps, self.generator(name, size, "fit"))
            self.built[name, size] = estimator
        return self.built[name, size]

    def estimate_once(self, name: str, family: Family, size: int) -> Callable[[], torch.Tensor]:
        """A call that computes one gradient estimate of ``family`` at ``size``, on a copy of the built
        estimator: timed calls leave the state that :meth:`measure` measures (a carried ``Fitted``
        fit, which a call of another batch shape would reset) as :meth:`build` left it."""
        estimator, generator = copy.deepcopy(self.build(name, family, size)), self.generator(name, size, "time")
        return lambda: self.problem.gradient(estimator, generator)

    def measure(self, name: str, family: Family, size: int) -> Measurement:
        """Variance, bias (if the exact gradient is known), cost and time of ``family`` at ``size``
        (the statistics of :mod:`catlog.measure`)."""
        if (name, size) not in self.measured:
            problem = self.problem
            cost = family.cost(size, self.budget)
            estimator = self.build(name, family, size)
            block = FIT_ESTIMATES if isinstance(getattr(estimator, "control_variate", None), catlog.Fitted) else None
            grads = problem.gradients(estimator, self.repeats, self.generator(name, size, "variance"), block)
            self.measured[name, size] = Measurement(
                size,
                cost.samples,
                cost.evaluations,
                catlog.gradient_variance(grads),
                None if problem.exact is None else catlog.squared_bias(grads, problem.exact),
                None if problem.exact is None else catlog.squared_bias_floor(grads),
                *self.time(name, family, size),
            )
        return self.measured[name, size]

    def size_for_time(self, name: str, family: Family, start: int) -> tuple[int, bool]:
        """The size whose CPU time per estimate is about the reference's (time ratio 1), and whether
        ``--max-evaluations`` capped it.

        Times a ladder of sizes ``start * 4^j`` (up while faster than the reference, down while
        slower), then interpolates log-log between the two sizes that bracket ratio 1.
        """
        cap = largest_size(family, self.budget, "evaluations", self.config.max_evaluations) or family.min_size
        size = min(start, cap)
        ratio = self.time(name, family, size)[1]
        step = 4 if ratio < 1 else 1 / 4
        while True:
            following = min(cap, max(family.min_size, round(size * step)))
            if following == size:
                return size, step > 1 and size == cap
            following_ratio = self.time(name, family, following)[1]
            if (following_ratio >= 1) == (step > 1):
                return interpolate(size, ratio, following, following_ratio, 1.0), False
            size, ratio = following, following_ratio


def interpolate(size_a: int, time_a: float, size_b: int, time_b: float, target: float) -> int:
    """The size at which the log-log line through ``(size_a, time_a)``, ``(size_b, time_b)`` takes ``target``;
    within ``[min, max]`` of the two sizes."""
    low, high = sorted((size_a, size_b))
    if time_a <= 0 or time_b <= 0 or time_a == time_b:
        return low
    slope = (math.log(size_b) - math.log(size_a)) / (math.log(time_b) - math.log(time_a))
    size = math.exp(math.log(size_a) + slope * (math.log(target) - math.log(time_a)))
    return int(min(high, max(low, round(size))))


def compare_problem(
    problem: Problem, repeats: int, config: CompareConfig, device: torch.device
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows of one problem (every applicable estimator in every setting) and the estimators' labels."""
    names = dict.fromkeys(("indecater", *config.estimators))  # the reference first, always
    families = applicable(list(names), problem)
    runner = Runner(problem, config, device, families["indecater"], config.samples, repeats)
    base = runner.measure("indecater", families["indecater"], config.samples)
    rows = []
    for name, family in common.progress(families.items(), desc=problem.name):
        sizes = {
            "equal samples": largest_size(family, runner.budget, "samples", config.samples),
            "equal evaluations": largest_size(family, runner.budget, "evaluations", base.evaluations),
        }
        if name == "indecater":
            sizes["equal time"], capped = config.samples, False
        else:
            start = sizes["equal evaluations"] or family.min_size
            sizes["equal time"], capped = runner.size_for_time(name, family, start)
        for setting, size in sizes.items():
            if size is not None:
                row = row_of(problem, setting, name, runner.measure(name, family, size), repeats)
                row["capped"] = capped and setting == "equal time"
                rows.append(row)
    return rows, {name: family.title(problem.autoregressive) for name, family in families.items()}


def row_of(problem: Problem, setting: str, name: str, measurement: Measurement, repeats: int) -> dict[str, Any]:
    """One table row (see :data:`COLUMNS`)."""
    return {
        "problem": problem.name,
        "setting": setting,
        "estimator": name,
        **measurement._asdict(),
        "repeats": repeats,
        "variance_x_cpu_ms": measurement.variance * measurement.cpu_ms,
    }


def format_table(problem: Problem, repeats: int, rows: Sequence[dict[str, Any]], labels: dict[str, str]) -> str:
    """A plain-text table of one problem's rows, grouped by setting."""
    header = (
        f"{'setting':<18}{'estimator':<20}{'size':>6}{'samples':>8}{'evals':>7}{'variance':>11}"
        f"{'bias^2':>10}{'(floor)':>10}{'cpu ms':>9}{'t/t_ref':>8}{'var x ms':>10}"
    )
    scale = "" if problem.exact is None else f", |exact gradient|^2 = {float(problem.exact.square().sum()):.3g}"
    lines = [f"{problem.title}  ({repeats} estimates each{scale})", header, "-" * len(header)]
    for row in sorted(rows, key=lambda r: SETTINGS.index(r["setting"])):
        bias = "" if row["sq_bias"] is None else f"{row['sq_bias']:.2e}"
        floor = "" if row["sq_bias_floor"] is None else f"{row['sq_bias_floor']:.2e}"
        label = labels[row["estimator"]] + (" *" if row["capped"] else "")
        lines.append(
            f"{row['setting']:<18}{label:<20}{row['size']:>6}{row['samples']:>8}{row['evaluations']:>7}"
            f"{row['variance']:>11.3e}{bias:>10}{floor:>10}{row['cpu_ms']:>9.2f}{row['time_ratio']:>8.2f}"
            f"{row['variance_x_cpu_ms']:>10.2e}"
        )
    return "\n".join(lines)


FIGURE_SIZE = (7.0, 3.5)
"""Inches of one problem's figure: readable at page width."""


def plot(title: str, rows: Sequence[dict[str, Any]], labels: dict[str, str], path: Path) -> Path:
    """One problem's figure: variance against evaluations (left) and against CPU time over the
    reference's (right, measured side by side), log-log, one line per estimator through its
    settings' markers, the legend outside the axes."""
    fig, axes = plotting.subplots(1, 2, figsize=FIGURE_SIZE, sharey=True)
    import matplotlib  # after plotting.subplots chose the backend
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    markers = dict(zip(SETTINGS, ("o", "s", "^")))
    # tab20's dark shades first, then its light ones
    tab20 = matplotlib.colormaps["tab20"]
    colours = {name: tab20(2 * index % 20 + 2 * index // 20) for index, name in enumerate(ESTIMATORS)}
    axis_labels = {"evaluations": "evaluations of f", "time_ratio": "CPU time / reference's"}
    reference = next(row for row in rows if row["estimator"] == "indecater" and row["setting"] == "equal samples")
    handles: list[Any] = []
    for ax, (key, axis_label) in zip(axes, axis_labels.items()):
        handles = []
        for name in (name for name in ESTIMATORS if name in labels):
            points = sorted(
                {(row["size"], row[key], row["variance"], row["setting"]) for row in rows if row["estimator"] == name}
            )
            positive = [point for point in points if point[2] > 0]  # log axes: an exact estimator has no point
            if not positive:
                continue
            (line,) = ax.plot(
                [p[1] for p in positive], [p[2] for p in positive], "-", color=colours[name], alpha=0.7, lw=1.2
            )
            for _, x, y, setting in positive:
                ax.plot(x, y, markers[setting], color=colours[name], markersize=4)
            handles.append((line, labels[name]))
        if reference["variance"] > 0:
            ax.plot(reference[key], reference["variance"], "*", color="black", markersize=10, zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        low, high = ax.get_xlim()
        # 1-2-5 ticks over up to two decades; decades only beyond, where 1-2-5 labels collide.
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(axis_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("variance: sum_i Var(g_i)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    settings = [Line2D([], [], marker=m, color="grey", linestyle="") for m in markers.values()]
    star = Line2D([], [], marker="*", color="black", linestyle="", markersize=8)
    fig.legend(
        [line for line, _ in handles] + settings + [star],
        [label for _, label in handles] + list(markers) + [f"reference, N = {reference['samples']}"],
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    return common.save_figure(fig, path, dpi=150)


def run(config: CompareConfig) -> tuple[Path, str]:
    """Run the comparison; write the JSON, CSV, text tables and figure; returns ``(folder, printed text)``."""
    device, dtype = torch.device(config.device), config.torch_dtype
    with run_folder.open_command_run(config, "compare") as opened:
        folder = opened.path
        rows, labels, titles, tables = [], {}, {}, []
        for name in config.problems:
            problem = BUILDERS[name](config, device, dtype)
            repeats = config.model_repeats if name in MODEL_PROBLEMS else config.repeats
            problem_rows, labels[name] = compare_problem(problem, repeats, config, device)
            titles[problem.name] = problem.title
            rows.extend(problem_rows)
            tables.append(format_table(problem, repeats, problem_rows, labels[name]))
            common.write_csv(folder / "compare.csv", rows, COLUMNS)  # partial results survive an interruption
        for name, title in titles.items():
            plot(title, [row for row in rows if row["problem"] == name], labels[name], folder / f"compare-{name}.png")
        run_cpu_s = time.process_time()
        common.write_json(
            folder / "compare.json",
            {
                "settings": config_json(config),
                "titles": titles,
                "labels": labels,
                "run_cpu_s": run_cpu_s,
                "results": rows,
            },
        )
        text = "\n\n".join(tables) + (
            "\n\n* capped at --max-evaluations before reaching the reference's time"
            f"\nprocess CPU time of the whole run: {run_cpu_s:.0f} s\n"
        )
        common.write_text(folder / "compare.txt", text)
        return folder, text


def main(config: CompareConfig) -> int:
    """``catlog compare``: run (with :data:`QUICK` sizes under ``--quick``), print the tables and where the files
    went."""
    config = replace(config, **QUICK, quick=False) if config.quick else config
    folder, text = run(config)
    print(text)
    print(f"results in {folder}/ (compare.json, compare.csv, compare.txt, compare-PROBLEM.png)")
    return 0


COMMAND = Command(
    "compare",
    help="every estimator on a suite of problems at equal samples, evaluations and time",
    description=__doc__ or "",
    config=CompareConfig,
    run=main,
)
