"""``catlog compare``: every estimator on a suite of problems, at equal samples, evaluations and time.

The reference is the CatLog-Derivative estimator with ``N = --samples`` samples
(IndeCateR on independent logits, SCateR on the autoregressive problem). Every other
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

Each measurement: ``R`` independent gradient estimates at fixed parameters give the
variance ``sum_i Var_r g_ri`` (the trace of the covariance: an estimator's variance, not
the spread of one gradient's entries) and, where the exact gradient is known (enumeration),
the squared bias ``sum_i (mean_r g_ri - g*_i)^2`` beside its noise floor ``variance / R``
(what an unbiased estimator shows); the median CPU and wall time of one estimate (value
and backward pass, separately timed calls) and its ratio to the reference's; samples and
evaluations from ``cost()``; and the work-normalised variance ``variance x CPU ms``.

Outputs: ``compare.json``, ``compare.csv``, ``compare.txt`` (the printed tables) and
``compare.png`` (variance against evaluations and against CPU time relative to the
reference, log-log, one column per problem).
"""

from __future__ import annotations

import math
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

import catlog
from catlog.experiments import common, compare_problems, data, estimators, run_folder
from catlog.experiments.compare_problems import Problem
from catlog.experiments.options import Command, RunOptions, config_json, option, parse_size, show_size

PROBLEMS: tuple[str, ...] = ("fig1", "binary", "autoregressive", "dvae", "addition")
# Names of the experiments' vocabulary (:mod:`catlog.experiments.estimators`): its methods and its
# baselines without a budget suffix, since this command sets every size itself.
ESTIMATORS: tuple[str, ...] = (
    "indecater",
    "indecater-pv",
    "reinforce",
    "rloo",
    "disarm",
    "gs-st",
    "reinmax",
    "gumbel-rao",
)
LABELS = {
    "reinforce": "REINFORCE",
    "rloo": "RLOO",
    "disarm": "DisARM",
    "gs-st": "ST Gumbel-Softmax",
    "reinmax": "ReinMax",
    "gumbel-rao": f"Gumbel-Rao ({estimators.GUMBEL_RAO_SAMPLES})",
}
NEEDS_RELAXABLE = ("gs-st", "reinmax", "gumbel-rao")
SETTINGS: tuple[str, ...] = ("equal samples", "equal evaluations", "equal time")
COLUMNS: tuple[str, ...] = (
    "problem",
    "setting",
    "estimator",
    "size",
    "samples",
    "evaluations",
    "repeats",
    "variance",
    "sq_bias",
    "sq_bias_floor",
    "cpu_ms",
    "wall_ms",
    "time_ratio",
    "variance_x_cpu_ms",
    "capped",
)
ELEMENT_BUDGET = 2_000_000  # rows x D x K per estimator call when repeats are batched


@dataclass(frozen=True, kw_only=True)
class CompareConfig(RunOptions, data.DataOptions):
    """Everything ``catlog compare`` computes from (the command line builds it; nothing else reads argparse)."""

    problems: tuple[str, ...] = option(PROBLEMS, "problems to run", choices=PROBLEMS)
    estimators: tuple[str, ...] = option(
        ESTIMATORS, "estimators to compare (the reference indecater is always measured)", choices=ESTIMATORS
    )
    samples: int = option(2, "N of the reference IndeCateR/SCateR and of the equal-samples rows", minimum=1)
    repeats: int = option(200, "estimates per variance on fig1, binary, autoregressive", minimum=2)
    model_repeats: int = option(30, "estimates per variance on dvae and addition", minimum=2)
    timing_repeats: int = option(7, "timed single estimates per size, after one warm-up", minimum=1)
    timing_seconds: float = option(0.2, "...and more of them until they took this much CPU", minimum=0)
    max_evaluations: int = option(20_000, "largest evaluations per estimate tried for equal time", minimum=1)
    temperature: float = option(1.0, "temperature of the relaxed estimators", above=0)
    fig1: tuple[int, int] = option(
        (6, 10),
        "size of the figure-1 problem",
        parse=parse_size,
        show=show_size,
        metavar="DxK",
    )
    binary_variables: int = option(12, "D of the binary problem", minimum=1)
    dvae_checkpoint: Path | None = option(
        None, "checkpoint.pt of a `catlog dvae` run (D = 200, K = 2)", default_text="train here"
    )
    dvae_steps: int = option(300, "RLOO(2) training steps of the DVAE without a checkpoint", minimum=0)
    dvae_batch: int = option(10, "validation images in the DVAE gradient", minimum=1)
    addition_digits: int = option(4, "D of the addition problem", minimum=1)
    addition_batch: int = option(10, "test sequences in the addition gradient", minimum=1)
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
    "dvae_steps": 2,
    "dvae_batch": 2,
    "addition_batch": 2,
}


class Candidate(NamedTuple):
    """An estimator family: ``make(size)`` builds it; ``min_size`` is the smallest size it takes."""

    label: str
    make: Callable[[int], catlog.Estimator]
    min_size: int


def build_estimators(names: Sequence[str], problem: Problem, temperature: float) -> dict[str, Candidate]:
    """The estimators of ``names`` that apply to ``problem``, as size -> estimator factories.

    The baselines come from the experiments' vocabulary (:data:`catlog.experiments.estimators.BASELINES`,
    size = samples; DisARM's size is its number of pairs). DisARM needs ``K = 2`` and independent
    logits; relaxed estimators need independent logits and an ``f`` that accepts relaxed
    values; on an autoregressive problem ``indecater`` is SCateR.
    """
    family, prefix = (catlog.SCateR, "SCateR") if problem.autoregressive else (catlog.IndeCateR, "IndeCateR")
    relaxed = problem.relaxable and not problem.autoregressive
    applies = {
        "disarm": problem.num_categories == 2 and not problem.autoregressive,
        **{name: relaxed for name in NEEDS_RELAXABLE},
    }
    budget = estimators.Budget(1, problem.num_variables, problem.num_categories, temperature)

    def baseline(name: str) -> Candidate:
        build = estimators.BASELINES[name].build
        if name == "disarm":  # its size is the number of antithetic pairs
            return Candidate(LABELS[name], lambda n: build(2 * n, budget), 1)
        return Candidate(LABELS[name], lambda n: build(n, budget), 2 if name == "rloo" else 1)

    table = {
        "indecater": Candidate(prefix, family, 1),
        "indecater-pv": Candidate(f"{prefix}-PV", lambda n: family(n, per_variable=True), 1),
        **{name: baseline(name) for name in LABELS},
    }
    return {name: table[name] for name in names if applies.get(name, True)}


def largest_size(candidate: Candidate, problem: Problem, field: str, budget: int) -> int | None:
    """The largest size ``n >= min_size`` with ``cost(D, K).<field> <= budget`` (costs grow with ``n``), or ``None``."""

    def fits(size: int) -> bool:
        return bool(getattr(candidate.make(size).cost(problem.num_variables, problem.num_categories), field) <= budget)

    low = candidate.min_size
    if not fits(low):
        return None
    high = low + 1
    while fits(high):
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


class Measurement(NamedTuple):
    """One estimator at one size: repeated gradients' statistics and its time per estimate."""

    size: int
    samples: int
    evaluations: int
    variance: float
    sq_bias: float | None
    sq_bias_floor: float | None
    cpu_ms: float
    wall_ms: float
    time_ratio: float


class Timing(NamedTuple):
    """Median CPU and wall ms of one estimate, and its CPU time over the reference's, timed side by side."""

    cpu_ms: float
    wall_ms: float
    ratio: float


class Runner:
    """Measures estimators on one problem against a ``reference`` at ``reference_size``,
    each ``(estimator, size)`` at most once."""

    def __init__(
        self, problem: Problem, config: CompareConfig, device: torch.device, reference: Candidate, reference_size: int
    ) -> None:
        self.problem, self.config, self.device = problem, config, device
        self.reference = ("indecater", reference, reference_size)
        self.measured: dict[tuple[str, int], Measurement] = {}
        self.timed: dict[tuple[str, int], Timing] = {}

    def generator(self, name: str, size: int, purpose: str) -> torch.Generator:
        """A generator seeded from ``--seed`` and what it is for (order-independent)."""
        key = zlib.crc32(f"{self.problem.name}/{name}/{size}/{purpose}".encode())
        return torch.Generator(device=self.device).manual_seed(self.config.seed * 1_000_003 + key)

    def time(self, name: str, candidate: Candidate, size: int) -> Timing:
        """The time of one estimate (value and backward pass), separately timed calls alternating with
        the reference's (so that both see the same machine load), after one warm-up call each; at least
        ``timing_repeats`` pairs and until they took ``timing_seconds`` of CPU."""
        if (name, size) not in self.timed:
            contenders = [(name, candidate, size)]
            if contenders[0] != self.reference:
                contenders.append(self.reference)
            calls = [self.estimate_once(*contender) for contender in contenders]
            clocks = [common.Clock(self.device) for _ in calls]
            for clock, call in zip(clocks, calls):
                clock.timed(call)
                clock.cpu_s = 0.0
            cpu: list[list[float]] = [[] for _ in calls]
            wall: list[list[float]] = [[] for _ in calls]
            while len(cpu[0]) < self.config.timing_repeats or sum(c.cpu_s for c in clocks) < self.config.timing_seconds:
                for clock, call, cpu_ms, wall_ms in zip(clocks, calls, cpu, wall):
                    clock.timed(call)
                    cpu_ms.append(1e3 * clock.last_cpu_s)
                    wall_ms.append(1e3 * clock.last_wall_s)
            medians = [statistics.median(times) for times in cpu]
            self.timed[name, size] = Timing(medians[0], statistics.median(wall[0]), medians[0] / medians[-1])
        return self.timed[name, size]

    def estimate_once(self, name: str, candidate: Candidate, size: int) -> Callable[[], torch.Tensor]:
        """A call that computes one gradient estimate of ``candidate`` at ``size``."""
        estimator, generator = candidate.make(size), self.generator(name, size, "time")
        return lambda: self.problem.gradients(estimator, 1, 1, generator)

    def measure(self, name: str, candidate: Candidate, size: int) -> Measurement:
        """Variance, bias (if the exact gradient is known), cost and time of ``candidate`` at ``size``."""
        if (name, size) not in self.measured:
            problem = self.problem
            estimator = candidate.make(size)
            cost = estimator.cost(problem.num_variables, problem.num_categories)
            width = max(cost.samples, cost.evaluations) * problem.num_variables * problem.num_categories
            block = max(1, min(problem.repeats, ELEMENT_BUDGET // width))
            grads = problem.gradients(estimator, problem.repeats, block, self.generator(name, size, "variance"))
            grads = grads.double()
            variance = float(grads.var(0).sum())
            sq_bias = None if problem.exact is None else float((grads.mean(0) - problem.exact).square().sum())
            self.measured[name, size] = Measurement(
                size,
                cost.samples,
                cost.evaluations,
                variance,
                sq_bias,
                None if sq_bias is None else variance / problem.repeats,
                *self.time(name, candidate, size),
            )
        return self.measured[name, size]

    def size_for_time(self, name: str, candidate: Candidate, start: int) -> tuple[int, bool]:
        """The size whose CPU time per estimate is about the reference's (time ratio 1), and whether
        ``--max-evaluations`` capped it.

        Times a ladder of sizes ``start * 4^j`` (up while faster than the reference, down while
        slower), then interpolates log-log between the two sizes that bracket ratio 1.
        """
        cap = largest_size(candidate, self.problem, "evaluations", self.config.max_evaluations) or candidate.min_size
        size = min(start, cap)
        ratio = self.time(name, candidate, size).ratio
        step = 4 if ratio < 1 else 1 / 4
        while True:
            following = min(cap, max(candidate.min_size, round(size * step)))
            if following == size:
                return size, step > 1 and size == cap
            following_ratio = self.time(name, candidate, following).ratio
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
    problem: Problem, config: CompareConfig, device: torch.device
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows of one problem (every applicable estimator in every setting) and the estimators' labels."""
    names = dict.fromkeys(("indecater", *config.estimators))  # the reference first, always
    candidates = build_estimators(list(names), problem, config.temperature)
    runner = Runner(problem, config, device, candidates["indecater"], config.samples)
    base = runner.measure("indecater", candidates["indecater"], config.samples)
    rows = []
    for name, candidate in common.progress(candidates.items(), desc=problem.name):
        sizes = {
            "equal samples": largest_size(candidate, problem, "samples", config.samples),
            "equal evaluations": largest_size(candidate, problem, "evaluations", base.evaluations),
        }
        if name == "indecater":
            sizes["equal time"], capped = config.samples, False
        else:
            start = sizes["equal evaluations"] or candidate.min_size
            sizes["equal time"], capped = runner.size_for_time(name, candidate, start)
        for setting, size in sizes.items():
            if size is not None:
                row = row_of(problem, setting, name, runner.measure(name, candidate, size))
                row["capped"] = capped and setting == "equal time"
                rows.append(row)
    return rows, {name: candidate.label for name, candidate in candidates.items()}


def row_of(problem: Problem, setting: str, name: str, measurement: Measurement) -> dict[str, Any]:
    """One table row (see :data:`COLUMNS`)."""
    return {
        "problem": problem.name,
        "setting": setting,
        "estimator": name,
        **measurement._asdict(),
        "repeats": problem.repeats,
        "variance_x_cpu_ms": measurement.variance * measurement.cpu_ms,
    }


def make_problem(name: str, config: CompareConfig, device: torch.device, dtype: torch.dtype) -> Problem:
    """The problem called ``name`` (one of :data:`PROBLEMS`) at ``config``'s sizes."""
    seed, repeats = config.seed, config.repeats
    if name == "fig1":
        return compare_problems.fig1_problem(*config.fig1, seed, repeats, device, dtype)
    if name == "binary":
        return compare_problems.binary_problem(config.binary_variables, seed, repeats, device, dtype)
    if name == "autoregressive":
        return compare_problems.autoregressive_problem(seed, repeats, device, dtype)
    if name == "dvae":
        return compare_problems.dvae_problem(
            config.dvae_checkpoint,
            config.dvae_steps,
            config.dvae_batch,
            config.data_dir,
            seed,
            config.model_repeats,
            device,
            dtype,
        )
    if name == "addition":
        return compare_problems.addition_problem(
            config.addition_digits, config.addition_batch, config.data_dir, seed, config.model_repeats, device, dtype
        )
    raise ValueError(f"problem: expected one of {PROBLEMS}, got {name!r}")


def format_table(problem: Problem, rows: Sequence[dict[str, Any]], labels: dict[str, str]) -> str:
    """A plain-text table of one problem's rows, grouped by setting."""
    header = (
        f"{'setting':<18}{'estimator':<20}{'size':>6}{'samples':>8}{'evals':>7}{'variance':>11}"
        f"{'bias^2':>10}{'(floor)':>10}{'cpu ms':>9}{'t/t_ref':>8}{'var x ms':>10}"
    )
    scale = "" if problem.exact is None else f", |exact gradient|^2 = {float(problem.exact.square().sum()):.3g}"
    lines = [f"{problem.title}  ({problem.repeats} estimates each{scale})", header, "-" * len(header)]
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


def plot(titles: dict[str, str], rows: Sequence[dict[str, Any]], labels: dict[str, dict[str, str]], path: Path) -> Path:
    """Variance against evaluations (top) and against CPU time over the reference's (bottom, measured
    side by side), log-log, one column per problem (``titles``: problem name -> title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    markers = dict(zip(SETTINGS, ("o", "s", "^")))
    colours = dict(zip(ESTIMATORS, matplotlib.colormaps["tab10"].colors))  # type: ignore[attr-defined]
    fig, axes = plt.subplots(2, len(titles), figsize=(4.2 * len(titles), 7), squeeze=False)
    axis_labels = {"evaluations": "evaluations of f", "time_ratio": "CPU time / reference's (side by side)"}
    for column, (problem, title) in enumerate(titles.items()):
        mine = [row for row in rows if row["problem"] == problem]
        for top, (key, axis_label) in enumerate(axis_labels.items()):
            ax = axes[top, column]
            for name in ESTIMATORS:
                mine_here = [row for row in mine if row["estimator"] == name]
                points = sorted({(row["size"], row[key], row["variance"], row["setting"]) for row in mine_here})
                if not points:
                    continue
                ax.plot(
                    [p[1] for p in points],
                    [p[2] for p in points],
                    "-",
                    color=colours[name],
                    alpha=0.6,
                    label=labels[problem][name],
                )
                for _, x, y, setting in points:
                    ax.plot(x, y, markers[setting], color=colours[name], markersize=5)
            reference = [row for row in mine if row["estimator"] == "indecater" and row["setting"] == "equal samples"]
            ax.plot(reference[0][key], reference[0]["variance"], "*", color="black", markersize=11, zorder=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            low, high = ax.get_xlim()
            # 1-2-5 ticks over up to two decades; decades only beyond, where 1-2-5 labels collide.
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis_label)
            ax.grid(True, which="major", alpha=0.3)
            if column == 0:
                ax.set_ylabel("variance: sum_i Var(g_i)")
        axes[0, column].set_title(title, fontsize=8)
        axes[0, column].legend(fontsize=6)
    handles = [Line2D([], [], marker=m, color="grey", linestyle="") for m in markers.values()]
    handles.append(Line2D([], [], marker="*", color="black", linestyle="", markersize=9))
    reference_samples = next(
        row["samples"] for row in rows if row["estimator"] == "indecater" and row["setting"] == "equal samples"
    )
    fig.legend(
        handles,
        [*markers, f"reference (IndeCateR / SCateR, N = {reference_samples})"],
        loc="lower center",
        ncol=4,
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return common.save_figure(fig, path)


def run(config: CompareConfig) -> tuple[Path, str]:
    """Run the comparison; write the JSON, CSV, text tables and figure; returns ``(folder, printed text)``."""
    common.apply_threads(config.threads)
    device, dtype = torch.device(config.device), config.torch_dtype
    with run_folder.open_run(
        common.default_out(config.out, "compare"), config_json(config), overwrite=config.overwrite
    ) as folder_lock:
        return _run_in(config, folder_lock.path, device, dtype)


def _run_in(config: CompareConfig, folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[Path, str]:
    problems, rows, labels, tables = [], [], {}, []
    for name in config.problems:
        problem = make_problem(name, config, device, dtype)
        problem_rows, labels[name] = compare_problem(problem, config, device)
        problems.append(problem)
        rows.extend(problem_rows)
        tables.append(format_table(problem, problem_rows, labels[name]))
        common.write_csv(folder / "compare.csv", rows, COLUMNS)  # partial results survive an interruption
    settings = config_json(config)
    titles = {problem.name: problem.title for problem in problems}
    plot(titles, rows, labels, folder / "compare.png")
    run_cpu_s = time.process_time()
    common.write_json(
        folder / "compare.json",
        {"settings": settings, "titles": titles, "labels": labels, "run_cpu_s": run_cpu_s, "results": rows},
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
    print(f"results in {folder}/ (compare.json, compare.csv, compare.txt, compare.png)")
    return 0


COMMAND = Command(
    "compare",
    help="every estimator on a suite of problems at equal samples, evaluations and time",
    description=__doc__ or "",
    config=CompareConfig,
    run=main,
)
