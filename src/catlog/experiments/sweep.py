"""``catlog sweep SPEC.toml``: run a grid of experiment runs, resumably, and collect one table.

A spec (TOML; YAML with PyYAML installed) names a command, the grid and the fixed options::

    command = "addition"           # a catlog subcommand, or a list: program and arguments
    nproc_per_node = 1             # > 1: each run under torchrun (catlog subcommands only)
    resume = "checkpoint.pt"       # optional: a rerun whose folder holds this file gets --resume
    collect = ["summary.json"]     # a run's result: the first of these it wrote ("file.json:key.path": part of it)

    [fixed]                        # options every run gets
    epochs = 1

    [grid]                         # every combination is one run, in OUT/<grid values>/
    estimator = ["indecater", "rloo-s"]
    seed = [0, 1, 2]

    [plot]                         # optional: run once after the runs
    command = "addition-plot"
    args = ["{runs}", "--out", "{out}/figure4.png"]

    [submitit]                     # optional: submitit.AutoExecutor parameters
    timeout_min = 120

Options become ``--name value`` (``true`` a bare flag, ``false`` nothing, a list
several values). A run is complete when its ``sweep-run.json`` says exit status 0
for the same argv; rerunning the sweep skips complete runs and reruns the others
(``--resume`` or, for a catlog subcommand, ``--overwrite``). ``OUT/results.csv`` gets
one row per run. Backends: ``local`` (``--jobs`` subprocesses at once), ``submitit``
(a Slurm job array), ``submitit-local`` (for tests). See docs/scaling.md.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catlog.experiments import common, run_folder
from catlog.experiments.options import Command, OptionError, Options, option, option_argv

RECORD = run_folder.SWEEP_RECORD
PR_SET_PDEATHSIG = 1  # prctl option, linux/prctl.h
DEFAULT_COLLECT = ("summary.json", "final.json")
BACKENDS = ("local", "submitit", "submitit-local")
SPEC_KEYS = {"command", "nproc_per_node", "collect", "fixed", "grid", "plot", "resume", "submitit"}


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its folder ``name`` from its grid ``values``, its whole ``argv`` (ending
    ``--out <folder>``), its ``folder``, the ``resume`` file name and whether ``argv`` is a ``catlog``
    subcommand (a rerun not resumed then gets ``--overwrite``)."""

    name: str
    values: Mapping[str, Any]
    argv: tuple[str, ...]
    folder: Path
    resume: str | None = None
    catlog: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep spec (see the module docstring): ``command`` is the argv prefix of every run,
    ``plot`` the plot command's argv (empty: none); ``catlog``: ``command`` is a catlog subcommand."""

    command: tuple[str, ...]
    grid: Mapping[str, Sequence[Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    collect: tuple[str, ...] = DEFAULT_COLLECT
    plot: tuple[str, ...] = ()
    resume: str | None = None
    submitit: Mapping[str, Any] = field(default_factory=dict)
    catlog: bool = False


def program(command: str | Sequence[str], nproc_per_node: int = 1) -> tuple[str, ...]:
    """The argv prefix for ``command``: a catlog subcommand (``python -m catlog.experiments NAME``, under
    ``torchrun --standalone --nproc-per-node N`` when ``N > 1``) or a list taken as it is."""
    if nproc_per_node < 1:
        raise ValueError(f"nproc_per_node: expected a positive integer, got {nproc_per_node}")
    if isinstance(command, str):
        launcher = ("-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}")
        return (sys.executable, *(launcher if nproc_per_node > 1 else ()), "-m", "catlog.experiments", command)
    if not command or not all(isinstance(word, str) for word in command):
        raise ValueError(f"command: expected a catlog subcommand or a non-empty list of strings, got {command!r}")
    if nproc_per_node > 1:
        raise ValueError(
            "nproc_per_node: expected 1 for a command given as a list (torchrun needs a catlog subcommand)"
        )
    return tuple(command)


def parse_spec(raw: Mapping[str, Any]) -> SweepSpec:
    """Check a spec read from TOML or YAML and return it as a :class:`SweepSpec`."""
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise ValueError(f"spec: expected keys among {', '.join(sorted(SPEC_KEYS))}, got {', '.join(sorted(unknown))}")
    if "command" not in raw:
        raise ValueError("spec: expected a 'command' (a catlog subcommand or a list), got none")
    grid = dict(raw.get("grid", {}))
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
    fixed = dict(raw.get("fixed", {}))
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"grid, fixed: expected each option in one of them, got {', '.join(both)} in both")
    if "out" in grid or "out" in fixed:
        raise ValueError("grid, fixed: expected no 'out' option (the sweep gives every run its folder), got one")
    plot = dict(raw.get("plot", {}))
    resume = raw.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ValueError(f"resume: expected a file name, got {resume!r}")
    collect = raw.get("collect", list(DEFAULT_COLLECT))
    if isinstance(collect, str) or not all(isinstance(name, str) for name in collect):
        raise ValueError(f"collect: expected a list of file names, got {collect!r}")
    return SweepSpec(
        command=program(raw["command"], int(raw.get("nproc_per_node", 1))),
        grid=grid,
        fixed=fixed,
        collect=tuple(collect),
        plot=(*program(plot["command"]), *map(str, plot.get("args", []))) if plot else (),
        resume=resume,
        submitit=dict(raw.get("submitit", {})),
        catlog=isinstance(raw["command"], str),
    )


def load_spec(path: Path) -> SweepSpec:
    """Read a sweep spec from a ``.toml`` file (or ``.yaml``/``.yml`` with PyYAML installed)."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"spec: expected a .toml file or PyYAML installed for {path.name}, got neither") from None
        raw = yaml.safe_load(path.read_text())
    elif path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:
            import tomli as tomllib
        raw = tomllib.loads(path.read_text())
    else:
        raise ValueError(f"spec: expected a .toml, .yaml or .yml file, got {path.name!r}")
    if not isinstance(raw, dict):
        raise ValueError(f"spec: expected a table of keys in {path.name}, got {type(raw).__name__}")
    return parse_spec(raw)


def expand(spec: SweepSpec, out: Path) -> list[Run]:
    """The runs of ``spec``: one per combination of grid values, in grid order, under ``out``."""
    runs = []
    for combination in itertools.product(*spec.grid.values()):
        values = dict(zip(spec.grid, combination))
        slugs = (re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "-" for value in values.values())
        name = "_".join(f"{key}={slug}" for key, slug in zip(values, slugs)) or "run"
        argv = (*spec.command, *option_argv(spec.fixed), *option_argv(values), "--out", str(out / name))
        runs.append(Run(name, values, argv, out / name, spec.resume, spec.catlog))
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"grid: expected values that give distinct folder names, got repeats among {names}")
    return runs


def read_record(run: Run) -> dict[str, Any] | None:
    """The record the sweep wrote when ``run`` last exited, or ``None``."""
    try:
        record: dict[str, Any] = json.loads((run.folder / RECORD).read_text())
        return record
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def status(run: Run) -> str:
    """``complete`` (last exit status 0 with this very argv), ``failed (exit N)`` or ``not run``."""
    record = read_record(run)
    if record is None or tuple(record.get("argv", ())) != run.argv:
        return "not run"
    return "complete" if record.get("returncode") == 0 else f"failed (exit {record.get('returncode')})"


def is_complete(run: Run) -> bool:
    """True when ``run`` last exited with status 0 with this very command line."""
    return status(run) == "complete"


def die_with_parent() -> None:
    """In a child before ``exec``: ask Linux to send SIGTERM when the sweep dies (even by ``kill -9``);
    elsewhere nothing (the run folder's lock still keeps a rerun from doubling a run)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def execute(run: Run) -> dict[str, Any]:
    """Run ``run`` to its end (logs into its folder), write its record atomically and return it.

    The record holds ``argv`` (without ``--resume``), ``resumed``, ``returncode``, ``wall_s`` and
    ``cpu_s`` (user plus system seconds of the run and its children, from ``os.wait4``: POSIX only).
    """
    run.folder.mkdir(parents=True, exist_ok=True)
    previous = read_record(run)
    same_argv = previous is None or tuple(previous.get("argv", ())) == run.argv
    resumed = run.resume is not None and (run.folder / run.resume).is_file() and same_argv
    extra = ("--resume",) if resumed else ("--overwrite",) if run.catlog else ()
    start = time.perf_counter()
    stdout_log, stderr_log = (run.folder / name for name in run_folder.SWEEP_LOGS)
    with open(stdout_log, "ab") as stdout, open(stderr_log, "ab") as stderr:
        process = subprocess.Popen(
            (*run.argv, *extra), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        _, exit_status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(exit_status)  # so that Popen does not wait again
    record = {
        "argv": list(run.argv),
        "resumed": resumed,
        "returncode": process.returncode,
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }
    common.write_json(run.folder / RECORD, record)
    return record


def run_local(runs: Sequence[Run], jobs: int) -> None:
    """Execute ``runs`` as subprocesses, at most ``jobs`` at once, with a progress bar."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(execute, run) for run in runs]
        for future in common.progress(as_completed(futures), total=len(futures), desc="runs", leave=True):
            future.result()


def run_submitit(runs: Sequence[Run], jobs: int, folder: Path, parameters: Mapping[str, Any], local: bool) -> None:
    """Execute ``runs`` as one submitit job array (Slurm, or submitit's local executor) and wait.

    ``parameters`` go to ``AutoExecutor.update_parameters``; ``jobs`` bounds the array's parallelism.
    A job lost outside the run (e.g. a Slurm time-out) is reported and counts as not complete.
    """
    try:
        import submitit
    except ImportError:
        raise ValueError("--backend: expected submitit installed (pip install 'catlog[cluster]'), got none") from None
    executor = submitit.AutoExecutor(folder=folder, cluster="local" if local else None)
    executor.update_parameters(**{"name": "catlog-sweep", "slurm_array_parallelism": jobs, **parameters})
    submitted = executor.map_array(execute, list(runs))
    for job in common.progress(submitit.helpers.as_completed(submitted), total=len(submitted), desc="jobs", leave=True):
        try:
            job.result()
        except Exception as error:  # a job lost by the cluster: report it and go on with the others
            print(f"job {job.job_id} failed: {error}", file=sys.stderr)


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            flat[prefix + key] = value
    return flat


def _result(folder: Path, result_files: Sequence[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """The first of ``result_files`` in ``folder`` and its rows (see :func:`collect`)."""
    for entry in result_files:
        name, _, path = entry.partition(":")
        if (folder / name).is_file():
            content: Any = json.loads((folder / name).read_text())
            for key in path.split(".") if path else ():
                content = content.get(key) if isinstance(content, Mapping) else None
            items = content if isinstance(content, list) else [content]
            return entry, [_flatten(item) for item in items if isinstance(item, Mapping)]
    return None, [{}]


def collect(runs: Sequence[Run], result_files: Sequence[str]) -> list[dict[str, Any]]:
    """The sweep's table: rows of ``run``, its grid values, ``status`` (:func:`status`), ``returncode``,
    ``wall_s``, ``cpu_s``, ``result_file``, then the scalar entries of the run's result (grid values win).

    The result is the first of ``result_files`` the run wrote; ``"name.json:key.path"`` selects the
    object at that key path, and a list of objects there gives one row per element.
    """
    rows = []
    for run in runs:
        record = read_record(run)
        row: dict[str, Any] = {"run": run.name, **run.values, "status": status(run)}
        for key in ("returncode", "wall_s", "cpu_s"):
            row[key] = record.get(key) if record and row["status"] != "not run" else None
        row["result_file"], results = _result(run.folder, result_files)
        for result in results or [{}]:
            rows.append({**row, **{key: value for key, value in result.items() if key not in row}})
    return rows


def write_table(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Write ``rows`` to ``out/results.csv`` (columns: the union of keys, first-seen order) and ``results.json``."""
    fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    common.write_json(out / "results.json", list(rows))
    return common.write_csv(out / "results.csv", [{key: row.get(key) for key in fieldnames} for row in rows])


def plot(spec: SweepSpec, runs: Sequence[Run], out: Path) -> int:
    """Run the spec's plot command on the complete runs; returns its exit status (0 when there is none)."""
    complete = [str(run.folder) for run in runs if is_complete(run)]
    if not spec.plot or not complete:
        return 0
    argv = [
        part for word in spec.plot for part in (complete if word == "{runs}" else [word.replace("{out}", str(out))])
    ]
    return subprocess.run(argv, check=False).returncode


@dataclass(frozen=True, kw_only=True)
class SweepConfig(Options):
    """Settings of ``catlog sweep``; :attr:`parsed` is the spec file read and checked."""

    spec: Path = option(help="sweep spec, .toml (or .yaml with PyYAML)")
    out: Path | None = option(None, "sweep folder", default_text="results/sweep-<spec name>, so reruns resume")
    jobs: int = option(1, "runs at once", minimum=1, flags=("-j",))
    backend: str = option("local", "where runs execute", choices=BACKENDS)
    dry_run: bool = option(False, "print the command lines of the runs to do and stop")
    collect_only: bool = option(False, "run nothing: collect the table and plot")
    parsed: SweepSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            object.__setattr__(self, "parsed", load_spec(self.spec))
        except (ValueError, OSError) as error:
            raise OptionError("spec", str(error).removeprefix("spec: ")) from None

    @property
    def folder(self) -> Path:
        """``--out``, else ``results/sweep-<spec name>``."""
        return self.out if self.out is not None else Path("results") / f"sweep-{self.spec.stem}"


def sweep(config: SweepConfig) -> int:
    """The ``catlog sweep`` command, with its folder locked; exit status 1 when a run is not complete."""
    spec, out = config.parsed, config.folder
    runs = expand(spec, out.resolve())
    pending = [run for run in runs if not is_complete(run)]
    print(f"{len(runs)} runs, {len(runs) - len(pending)} complete, {len(pending)} to run; output in {out}")
    if config.dry_run:
        for run in pending:
            print(" ".join(run.argv))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    lock = run_folder.acquire_lock(out)
    try:
        plan = [{"name": run.name, "values": dict(run.values), "argv": list(run.argv)} for run in runs]
        common.write_json(out / "sweep.json", plan)
        if pending and not config.collect_only:
            if config.backend == "local":
                run_local(pending, config.jobs)
            else:
                local = config.backend == "submitit-local"
                run_submitit(pending, config.jobs, out / "submitit", spec.submitit, local=local)
        table = write_table(collect(runs, spec.collect), out)
        incomplete = [run.name for run in runs if not is_complete(run)]
        plot_status = plot(spec, runs, out)
    finally:
        lock.close()
    print(f"table: {table}; {len(runs) - len(incomplete)}/{len(runs)} runs complete")
    for name in incomplete:
        print(f"not complete: {name} (see {out / name / run_folder.SWEEP_LOGS[1]})", file=sys.stderr)
    return 1 if incomplete or plot_status else 0


COMMAND = Command(
    "sweep",
    help="run a grid of experiment runs (resumable) and collect one table",
    description=__doc__ or "",
    config=SweepConfig,
    run=sweep,
)
