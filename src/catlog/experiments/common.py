"""Plumbing shared by every experiment: atomic files, progress, clocks, gradient variance.

Every experiment is a :class:`~catlog.experiments.options.Command` with a typed config
(:mod:`catlog.experiments.options`), writes into a run folder
(:func:`catlog.experiments.run_folder.open_run`), and writes its files with the
``write_*`` functions here, which write to a temporary file and rename it, so that a
run killed half-way never leaves a half-written file that looks complete (and the
run folder removes the temporary files such a kill leaves).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catlog.experiments import allocator

TEMPORARY_SUFFIX = ".tmp"


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
    """Write ``rows`` (dicts) as CSV with a header to ``path`` atomically; the columns are ``fieldnames``
    or every key of the rows in order of appearance, a row's missing keys empty cells."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of the CSV file ``path`` (with a header), as dicts of strings."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


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
    """Cumulative wall and process CPU seconds (``wall_s``, ``cpu_s``; ``last_*``: the latest call) of the
    code run through :meth:`timed`. CPU time does not depend on a shared machine's load; with a CUDA
    ``device`` the device is synchronised before each reading, so that queued kernels count."""

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
