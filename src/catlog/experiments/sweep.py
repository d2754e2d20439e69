"""``catlog sweep SPEC.toml``: run a grid of experiment runs, resumably, and collect one table.

A spec (TOML; YAML too when PyYAML is installed) names a command, the grid and
the fixed options::

    command = "addition"                # a catlog subcommand, or a list: program and arguments
    nproc_per_node = 1                  # > 1: each run under torchrun (catlog subcommands only)
    resume = "checkpoint.pt"            # optional: rerun a run that left this file with --resume
    collect = ["summary.json", "final.json"]   # a run's result: the first of these it wrote;
                                        # "file.json:key.path" selects part of a file

    [fixed]                             # options every run gets
    epochs = 1
    threads = 1

    [grid]                              # every combination is one run
    estimator = ["indecater", "rloo-s"]
    digits = [4, 8]
    seed = [0, 1, 2]

    [plot]                              # optional: run once after the runs, e.g. the paper's figure
    command = "addition-plot"
    args = ["{runs}", "--out", "{out}/figure4.png"]

    [submitit]                          # optional: parameters of submitit's AutoExecutor
    timeout_min = 120
    slurm_partition = "gpu"

Options become ``--name value`` (underscores turn into dashes); ``true`` gives a
bare ``--name``, ``false`` omits it, a list gives ``--name v1 v2``. Run ``i``
goes to ``OUT/<grid values>/`` (``--out`` is appended), with its standard output
and error appended to ``stdout.log``/``stderr.log`` there. When a run exits, the sweep
writes ``sweep-run.json`` into its folder (atomically: argv, exit status, wall
and CPU seconds). A run counts as complete when that record says exit status 0
for the same argv; running the sweep again skips complete runs and reruns the
others, so an interrupted sweep resumes. With ``resume = FILE``, a rerun whose
folder holds ``FILE`` (a checkpoint) left by the same command line gets ``--resume``
appended, so that a run killed half-way (e.g. by a cluster time limit) continues
instead of restarting; any other rerun of a catlog subcommand gets ``--overwrite``
and starts afresh. The sweep locks ``OUT`` while it runs (a second sweep there stops
at once), every catlog run locks its own folder, and on Linux each child gets
SIGTERM when the sweep dies (``PR_SET_PDEATHSIG``), so no run is left orphaned or
doubled. Finally ``OUT/results.csv`` (and
``results.json``) gets one row per run: its grid values, status, times, and the
scalar entries of the run's result file (nested keys joined by ``.``; lists are
left out), and the ``[plot]`` command runs with ``{runs}`` replaced by the
complete run folders and ``{out}`` by ``OUT``.

Backends: ``local`` runs up to ``--jobs`` subprocesses at once; ``submitit``
submits the runs as a Slurm job array through submitit (at most ``--jobs`` at
once) and waits for them; ``submitit-local`` uses submitit's local executor
(every run at once; for tests).
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
from catlog.experiments.options import Command, OptionError, Options, option

RECORD = run_folder.SWEEP_RECORD
PR_SET_PDEATHSIG = 1  # prctl option, linux/prctl.h
DEFAULT_COLLECT = ("summary.json", "final.json")
BACKENDS = ("local", "submitit", "submitit-local")
SPEC_KEYS = {"command", "nproc_per_node", "collect", "fixed", "grid", "plot", "resume", "submitit"}


@dataclass(frozen=True)
class Run:
    """One run of a sweep.

    Attributes:
        name: its folder name under the sweep's output, from its grid values.
        values: its grid values, ``{option: value}``.
        argv: the whole command line, ending with ``--out <folder>``.
        folder: where it writes.
        resume: a file name; when the folder holds it, ``--resume`` is appended to ``argv``.
        catlog: ``argv`` runs a catlog subcommand (a rerun not resumed gets ``--overwrite``).
    """

    name: str
    values: Mapping[str, Any]
    argv: tuple[str, ...]
    folder: Path
    resume: str | None = None
    catlog: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep spec (see the module docstring for the file format).

    Attributes:
        command: the program and leading arguments of every run.
        grid: ``{option: [values]}``; runs are the product, in this order.
        fixed: ``{option: value}`` given to every run.
        collect: file names, the first one a run wrote is its result.
        plot: program and arguments to run after the runs, or empty.
        resume: file whose presence in a run folder makes a rerun pass ``--resume``, or ``None``.
        submitit: parameters for ``submitit.AutoExecutor.update_parameters``.
        catlog: ``command`` is a catlog subcommand.
    """

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


def option_argv(options: Mapping[str, Any]) -> list[str]:
    """``{name: value}`` as command-line words: ``--name value``; ``True`` a bare flag,
    ``False``/``None`` nothing, a list ``--name v1 v2``; ``_`` in names becomes ``-``."""
    words: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return words


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-") or "-"


def expand(spec: SweepSpec, out: Path) -> list[Run]:
    """The runs of ``spec``: one per combination of grid values, in grid order, under ``out``."""
    keys = list(spec.grid)
    runs = []
    for combination in itertools.product(*(spec.grid[key] for key in keys)):
        values = dict(zip(keys, combination))
        name = "_".join(f"{key}={_slug(value)}" for key, value in values.items()) or "run"
        folder = out / name
        argv = (*spec.command, *option_argv(spec.fixed), *option_argv(values), "--out", str(folder))
        runs.append(Run(name, values, argv, folder, spec.resume, spec.catlog))
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


def is_complete(run: Run) -> bool:
    """True when ``run`` last exited with status 0 with this very command line."""
    record = read_record(run)
    return record is not None and record.get("returncode") == 0 and tuple(record.get("argv", ())) == run.argv


def die_with_parent() -> None:
    """In a child before ``exec``: ask Linux to send SIGTERM when the sweep dies (even by ``kill -9``).

    Elsewhere this does nothing; the run folder's lock still keeps a rerun from doubling a run.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def execute(run: Run) -> dict[str, Any]:
    """Run ``run`` to its end (logs into its folder), write its record atomically and return it.

    The record holds ``argv`` (the run's, without ``--resume``), ``resumed``,
    ``returncode``, ``wall_s`` and ``cpu_s`` (user plus system seconds of the run and
    the processes it waited for; of this last execution). The child gets SIGTERM when
    the sweep dies (:func:`die_with_parent`). A catlog run that is neither complete nor
    resumed is started afresh (``--overwrite``). POSIX only (``os.wait4``).
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
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
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

    ``parameters`` go to ``AutoExecutor.update_parameters`` (e.g. ``timeout_min``,
    ``gpus_per_node``, ``slurm_partition``); ``--jobs`` bounds the array's parallelism
    on Slurm. A job that fails outside the run (e.g. a Slurm time-out) is reported and
    counted as not complete.
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
    """The sweep's table: rows of ``run``, its grid values, ``status`` (``complete``,
    ``failed (exit N)`` or ``not run``), ``returncode``, ``wall_s``, ``cpu_s``,
    ``result_file``, then the scalar entries of the run's result (grid values win on a
    name clash).

    The result is the first of ``result_files`` that the run wrote. An entry
    ``"name.json:key.path"`` selects the object at that key path in the file; when
    the selected object is a list of objects, the run gives one row per element.
    """
    rows = []
    for run in runs:
        record = read_record(run)
        row: dict[str, Any] = {"run": run.name, **run.values}
        if is_complete(run):
            row["status"] = "complete"
        elif record is not None and tuple(record.get("argv", ())) == run.argv:
            row["status"] = f"failed (exit {record.get('returncode')})"
        else:
            row["status"] = "not run"
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
    table = [{key: row.get(key) for key in fieldnames} for row in rows]
    return common.write_csv(out / "results.csv", table, fieldnames)


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
    """The ``catlog sweep`` command; exit status 1 when a run is not complete at the end.

    The sweep folder is locked while the sweep runs, so a second sweep into it stops at once.
    """
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
        rows = collect(runs, spec.collect)
        table = write_table(rows, out)
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
