"""The folder one run writes into: config first, one writer at a time, one checkpoint format.

:func:`open_run` is the only way an experiment gets its folder. It

1. takes an exclusive lock (``fcntl.flock`` on ``.lock``, which names the holder's PID),
   so a second process writing the same folder stops with an error naming that PID;
2. removes temporary files left by a process killed during an atomic write;
3. refuses a folder that already holds results unless ``resume`` (continue from its
   checkpoint) or ``overwrite`` (delete its results and start again) is set;
4. on ``resume``, says plainly when there is no checkpoint to resume from or when the
   checkpoint is of an older format (:data:`SCHEMA`), and compares the saved
   ``config.json`` with the new config, naming every key that differs (keys in
   ``may_change`` may differ, e.g. ``epochs``);
5. writes ``config.json`` before anything else, and removes it again when the run fails
   before writing any result (so that the corrected rerun does not find a used folder).

Checkpoints are plain containers of tensors, numbers, strings, lists and dicts written
with :func:`save_checkpoint` (which adds ``"schema": SCHEMA``) and read with
``torch.load(..., weights_only=True)``. Older checkpoints, without the schema, still load
(:func:`load_checkpoint`: their ``model`` is where it was) but cannot be resumed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from catlog.experiments import common, distributed
from catlog.experiments.options import RunOptions, config_json

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
    """An open, locked run folder. Close it (or use it as a context manager) to release the lock.

    Attributes:
        path: the folder.
        resumed: True when a checkpoint is there to continue from.
    """

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

    def discard_if_unused(self) -> None:
        """Remove ``config.json`` when it is all the run wrote (the run failed before its first result)."""
        if {path.name for path in _results(self.path)} <= {CONFIG}:
            (self.path / CONFIG).unlink(missing_ok=True)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            self.discard_if_unused()
        self.close()


def acquire_lock(folder: Path) -> TextIO:
    """Lock ``folder`` for this process (non-blocking) and write our PID into its ``.lock``.

    Raises:
        RunFolderError: another live process holds the lock; the message names its PID.
    """
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


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of atomic writes (``.*.tmp``) that a killed process left in ``folder``."""
    for stale in folder.glob(f".*{common.TEMPORARY_SUFFIX}"):
        stale.unlink(missing_ok=True)


def _results(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name != LOCK and p.name not in SWEEP_FILES]


def config_differences(saved: Mapping[str, Any], new: Mapping[str, Any], may_change: Iterable[str]) -> list[str]:
    """``"key: saved -> new"`` for every key (of either config) whose values differ, outside ``may_change``."""
    allowed = set(may_change)
    keys = sorted((set(saved) | set(new)) - allowed)
    missing = "(absent)"
    return [
        f"{k}: {saved.get(k, missing)!r} -> {new.get(k, missing)!r}"
        for k in keys
        if saved.get(k, missing) != new.get(k, missing)
    ]


def open_run(
    folder: Path,
    config: Mapping[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    may_change: Iterable[str] = (),
    resumable: bool = False,
) -> RunFolder:
    """Create or reopen the run folder ``folder`` for a run with ``config`` (JSON-able); see the module docstring.

    ``resumable`` says whether the command takes ``--resume`` (the refusal of a used folder suggests it).

    Raises:
        RunFolderError: the folder is locked, holds results and neither ``resume`` nor
            ``overwrite`` is set, or ``resume`` finds another config or no checkpoint.
    """
    if resume and overwrite:
        raise RunFolderError("--resume, --overwrite: expected at most one of them, got both")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(folder)
    try:
        remove_stale_temporaries(folder)
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
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
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


@contextmanager
def open_on_main(
    config: RunOptions, experiment: str, ctx: distributed.DistributedContext, may_change: Iterable[str] = ()
) -> Iterator[Path]:
    """A training command's run folder: rank 0 opens it (:func:`open_run` with ``config``'s
    ``out``, ``overwrite`` and ``resume``, and the world size added to the saved config), every
    rank gets its path; the lock is released on exit.

    ``experiment`` names the default folder, ``results/<experiment>-<time>``.
    """
    folder = common.default_out(config.out, experiment)
    settings = {**config_json(config), "world_size": ctx.world_size}
    resume = bool(getattr(config, "resume", False))
    run = (
        open_run(folder, settings, resume=resume, overwrite=config.overwrite, may_change=may_change, resumable=True)
        if ctx.is_main
        else None
    )
    try:
        yield distributed.broadcast_object(folder, ctx)
    except BaseException:
        if run is not None:
            run.discard_if_unused()
        raise
    finally:
        if run is not None:
            run.close()


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) and the :data:`SCHEMA` to the checkpoint
    ``path`` atomically."""
    return common.write_torch(path, {"schema": SCHEMA, **state})


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` onto ``device``."""
    checkpoint: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    return checkpoint
