"""Plumbing shared by every experiment: commands, common options, atomic files, progress.

Every experiment is a :class:`Command` with a typed config (a frozen dataclass that
extends :class:`RunOptions`), writes into a run folder
(:func:`catlog.experiments.run_folder.open_run`), and writes its files with the
``write_*`` functions here, which write to a temporary file and rename it, so that a
run killed half-way never leaves a half-written file that looks complete (and the
run folder removes the temporary files such a kill leaves).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from catlog.experiments import allocator

T = TypeVar("T")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
TEMPORARY_SUFFIX = ".tmp"


class OptionError(ValueError):
    """A command-line option with a value that cannot work; the CLI turns it into a usage error (exit 2).

    Attributes:
        option: the option's flag, e.g. ``--log-every``.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


def check_at_least(option: str, value: int | float, minimum: int | float) -> None:
    """Raise :class:`OptionError` for ``option`` unless ``value >= minimum``."""
    if value < minimum:
        raise OptionError(option, f"expected a value >= {minimum}, got {value}")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The options every experiment takes (see :func:`add_common_options`).

    Attributes:
        out: the run folder (``None``: a fresh timestamped folder under ``results/``).
        overwrite: delete the results already in ``out`` and start again.
        device: torch device name, e.g. ``cpu`` or ``cuda:1``.
        seed: random seed.
        dtype: ``float32`` or ``float64``.
        threads: torch CPU threads (``None``: torch's choice).
    """

    out: Path | None = None
    overwrite: bool = False
    device: str = "cpu"
    seed: int = 0
    dtype: str = "float32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None:
            check_at_least("--threads", self.threads, 1)
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise OptionError(
                "--device", f"expected an available device, got {self.device!r} but CUDA is not available"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by :attr:`dtype`."""
        return DTYPES[self.dtype]


def config_from_args(config_type: type[T], args: argparse.Namespace) -> T:
    """``config_type`` (a dataclass) built from the parsed options of the same names."""
    names = {f.name for f in fields(config_type)}  # type: ignore[arg-type]
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in vars(args).items() if name in names}
    return config_type(**values)


def parse_config(text: str) -> tuple[int, int]:
    """``"12x3"`` -> ``(12, 3)``."""
    try:
        num_variables, num_categories = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a config DxK such as 12x3, got {text!r}") from None
    if num_variables < 1 or num_categories < 2:
        raise argparse.ArgumentTypeError(f"expected D >= 1 and K >= 2, got {text!r}")
    return num_variables, num_categories


def config_json(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-able dict (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        return value

    return {key: plain(value) for key, value in asdict(config).items()}


@dataclass(frozen=True)
class Command:
    """One ``catlog`` subcommand: its options, the typed config built from them, and what runs.

    Attributes:
        name: the subcommand.
        help: one line for ``catlog --help``.
        description: shown verbatim by ``catlog NAME --help`` (typically the module docstring).
        add_options: adds the command's own options to a parser.
        config: builds the command's config from the parsed options; raises :class:`OptionError`.
        run: runs the command on its config; returns the exit status.
        common: whether the command takes the options of :func:`add_common_options`.
    """

    name: str
    help: str
    description: str
    add_options: Callable[[argparse.ArgumentParser], None]
    config: Callable[[argparse.Namespace], Any]
    run: Callable[[Any], int]
    common: bool = True


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--out``, ``--overwrite``, ``--device``, ``--seed``, ``--dtype`` and ``--threads`` to ``parser``."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--out", type=Path, default=None, help="run folder (None: a fresh timestamped folder under results/)"
    )
    group.add_argument(
        "--overwrite", action="store_true", help="delete the results already in --out and start the run again"
    )
    group.add_argument("--device", default="cpu", help="torch device to run on, e.g. cpu, cuda, cuda:1")
    group.add_argument("--seed", type=int, default=0, help="random seed")
    group.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="floating point precision of parameters and estimates",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (None: torch's choice); 1 is often fastest for small tensors",
    )


def apply_common_options(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """For scripts beside the commands (benchmarks): check the common options of ``args``
    (:class:`RunOptions`), set the threads and return ``(device, dtype)``."""
    options = config_from_args(RunOptions, args)
    apply_threads(options.threads)
    return torch.device(options.device), options.torch_dtype


def apply_threads(threads: int | None) -> None:
    """The process settings of every command: torch's CPU threads (``None`` keeps torch's
    choice), and freed memory kept for reuse (:func:`catlog.experiments.allocator.keep_freed_memory`)."""
    allocator.keep_freed_memory()
    if threads is not None:
        torch.set_num_threads(threads)


def default_out(out: Path | None, experiment: str) -> Path:
    """``out``, or ``results/<experiment>-<timestamp>`` when it is ``None``."""
    if out is not None:
        return Path(out)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("results") / f"{experiment}-{stamp}"


def _write_atomic(path: Path, write: Any, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _write_atomic(path, lambda handle: handle.write(text))


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _write_atomic(path, lambda handle: handle.write(data), binary=True)


def write_torch(path: Path, obj: Any) -> Path:
    """Write ``obj`` with ``torch.save`` to ``path`` atomically (checkpoints, tensor caches)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue())


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN/inf are refused)."""
    return write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (dicts sharing keys) as CSV with a header to ``path`` atomically."""
    if fieldnames is None:
        fieldnames = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table: a header of ``columns``, then one line per row of cells (``str`` of each)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm progress bar (on standard error); ``kwargs`` go to ``tqdm.tqdm``."""
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)


@dataclass
class Clock:
    """Cumulative time of the code run through :meth:`timed`: wall seconds and process CPU seconds.

    On a shared machine wall time depends on the load and CPU time does not (it counts
    every thread of this process); experiments record both. With a CUDA ``device`` the
    device is synchronised before each clock reading, so that queued kernels are counted.

    Attributes:
        wall_s, cpu_s: totals so far.
        last_wall_s, last_cpu_s: the time of the latest call.
    """

    device: torch.device | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    last_wall_s: float = 0.0
    last_cpu_s: float = 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()``, add its wall and CPU time to the totals, and return its result."""
        self._sync()
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        self._sync()
        self.last_wall_s = time.perf_counter() - wall
        self.last_cpu_s = time.process_time() - cpu
        self.wall_s += self.last_wall_s
        self.cpu_s += self.last_cpu_s
        return result
