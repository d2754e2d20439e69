"""The folder one run writes into: config first, one writer at a time, one checkpoint format.

:func:`open_run` locks the folder (``fcntl.flock`` on ``.lock``, which names the holder's PID),
removes temporaries a killed write left, refuses a folder holding results unless ``resume`` or
``overwrite``, checks on ``resume`` that there is a checkpoint of today's format (:data:`SCHEMA`)
and that the saved config differs only in ``may_change`` (naming every other difference), then
writes ``config.json``, which it removes again if the run fails before any result. Checkpoints
are plain containers written by :func:`save_checkpoint` and read with ``weights_only=True``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch

from catlog.experiments import common, distributed
from catlog.experiments.options import RunOptions, config_json

Model = TypeVar("Model", bound=torch.nn.Module)

LOCK = ".lock"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
SCHEMA = 2  # the checkpoint format of the one training loop (catlog.experiments.training); 1: before it
# Files the sweep runner keeps in a run's folder; they do not make the folder "used".
SWEEP_RECORD = "sweep-run.json"
SWEEP_LOGS: tuple[str, str] = ("stdout.log", "stderr.log")
SWEEP_FILES: tuple[str, ...] = (SWEEP_RECORD, *SWEEP_LOGS)


class RunFolderError(RuntimeError):
    """A run folder cannot be used as asked: locked, already used, or not resumable."""


@dataclass
class RunFolder:
    """An open, locked run folder at ``path`` (``resumed``: continuing its checkpoint); closing it (or
    leaving it as a context manager) releases the lock, and leaving it by an exception removes
    ``config.json`` if it is all the run wrote."""

    path: Path
    resumed: bool
    _lock: TextIO

    @property
    def checkpoint(self) -> Path:
        """``<path>/checkpoint.pt``."""
        return self.path / CHECKPOINT

    def close(self) -> None:
        """Release the lock."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and {path.name for path in _results(self.path)} <= {CONFIG}:
            (self.path / CONFIG).unlink(missing_ok=True)
        self.close()


def acquire_lock(folder: Path) -> TextIO:
    """Lock ``folder`` for this process (non-blocking) and write our PID into its ``.lock``; a
    :class:`RunFolderError` names the PID of a live process holding it."""
    handle = open(folder / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunFolderError(
            f"{folder}: in use by another process (PID {holder}); wait for it or choose another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _results(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != LOCK and p.name not in SWEEP_FILES]


def config_differences(saved: Mapping[str, Any], new: Mapping[str, Any], may_change: Iterable[str]) -> list[str]:
    """``"key: saved -> new"`` for every key (of either config) whose values differ, outside ``may_change``.

    An absent key counts as ``None``: an option added since the run was saved and left unset
    (``--estimator-lr``, for example) is no difference.
    """
    allowed = set(may_change)
    keys = sorted((set(saved) | set(new)) - allowed)
    missing = "(absent)"
    return [f"{k}: {saved.get(k, missing)!r} -> {new.get(k, missing)!r}" for k in keys if saved.get(k) != new.get(k)]


def open_run(
    folder: Path,
    config: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    may_change: Iterable[str] = (),
    resumable: bool = False,
) -> RunFolder:
    """Create or reopen ``folder`` for a run with ``config`` (JSON-able), or raise :class:`RunFolderError`
    (see the module docstring); ``resumable``: the command takes ``--resume`` (the refusal suggests it)."""
    if resume and overwrite:
        raise RunFolderError("--resume, --overwrite: expected at most one of them, got both")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(folder)
    try:
        for stale in folder.glob(f".*{common.TEMPORARY_SUFFIX}"):  # left by a killed atomic write
            stale.unlink(missing_ok=True)
        used = _results(folder)
        if resume:
            _check_resumable(folder, config, may_change)
        elif used and not overwrite:
            resume_hint = "pass --resume to continue it, " if resumable else "pass "
            raise RunFolderError(
                f"{folder}: already holds results ({', '.join(sorted(p.name for p in used)[:4])}); "
                f"{resume_hint}--overwrite to start it again, or choose another --out"
            )
        elif used:
            for path in used:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        common.write_json(folder / CONFIG, dict(config))
    except BaseException:
        RunFolder(folder, resume, lock).close()
        raise
    return RunFolder(folder, resume, lock)


def _check_resumable(folder: Path, config: Mapping[str, Any], may_change: Iterable[str]) -> None:
    if not (folder / CHECKPOINT).is_file():
        raise RunFolderError(
            f"--resume: {folder} has no {CHECKPOINT} to continue from (the run stopped before its first "
            "checkpoint); run again with --overwrite to start it afresh"
        )
    saved = load_checkpoint(folder / CHECKPOINT)
    schema = saved.get("schema", 1)
    former_policy = "policy" in saved  # schema 2 of plan/generate's former loop
    if schema != SCHEMA or former_policy:
        kind = f"schema {schema}" + (" of plan/generate's own loop" if former_policy else "")
        loads = "" if former_policy else "its model still loads (dvae-variance, compare --dvae-checkpoint), but "
        raise RunFolderError(
            f"--resume: {folder / CHECKPOINT} is a checkpoint of an older catlog ({kind}, expected {SCHEMA}: "
            f"one training loop, Keras' Adam); {loads}training cannot continue it: start the run again with --overwrite"
        )
    saved = json.loads((folder / CONFIG).read_text())
    changed = config_differences(saved, config, may_change)
    if changed:
        raise RunFolderError(f"--resume: {folder} was run with another config; differing: {'; '.join(changed)}")


def open_command_run(config: RunOptions, experiment: str) -> RunFolder:
    """The run folder of a command that does not train (``--out``, default ``results/<experiment>-<time>``,
    opened by :func:`open_run` with ``config``), once ``--threads`` is applied (:func:`common.apply_threads`)."""
    common.apply_threads(config.threads)
    return open_run(common.default_out(config.out, experiment), config_json(config), overwrite=config.overwrite)


@contextmanager
def open_on_main(
    config: RunOptions, experiment: str, ctx: distributed.DistributedContext, may_change: Iterable[str] = ()
) -> Iterator[Path]:
    """A training command's run folder (default ``results/<experiment>-<time>``): rank 0 opens it
    (:func:`open_run`, the world size added to the saved config), every rank gets its path."""
    folder = common.default_out(config.out, experiment)
    settings = {**config_json(config), "world_size": ctx.world_size}
    resume = bool(getattr(config, "resume", False))
    with (
        open_run(folder, settings, resume=resume, overwrite=config.overwrite, may_change=may_change, resumable=True)
        if ctx.is_main
        else nullcontext()
    ):
        yield distributed.broadcast_object(folder, ctx)


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) and the :data:`SCHEMA` to the checkpoint
    ``path`` atomically."""
    return common.write_torch(path, {"schema": SCHEMA, **state})


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` onto ``device``."""
    checkpoint: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    return checkpoint


def load_model(path: Path, model: Model) -> Model:
    """Load the model weights of the checkpoint at ``path`` (any schema) into ``model``; returns ``model``."""
    model.load_state_dict(load_checkpoint(path)["model"])
    return model
