"""The run folder every experiment writes into: lock, refusal, resume checks, stale temporaries, checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from catlog.experiments import common, run_folder
from catlog.experiments.cli import main
from catlog.experiments.run_folder import RunFolderError, open_run

CONFIG = {"estimator": "indecater", "digits": 4, "epochs": 1}


def test_config_is_written_first_and_the_lock_released_on_close(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", CONFIG) as run:
        assert json.loads((run.path / "config.json").read_text()) == CONFIG
        assert (run.path / ".lock").read_text().strip() == str(os.getpid())
    with open_run(tmp_path / "run", CONFIG, overwrite=True):  # released: a new writer gets it
        pass


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from catlog.experiments.run_folder import open_run
            run = open_run({str(tmp_path / "run")!r}, {{"estimator": "rloo-s"}})
            print("locked", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by another process \\(PID {holder.pid}\\)"):
            open_run(tmp_path / "run", CONFIG, overwrite=True)
        # The holder's config is untouched.
        assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"estimator": "rloo-s"}
    finally:
        holder.kill()
        holder.wait()


def test_concurrent_commands_one_exits_with_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "catlog.experiments",
        "optimise",
        "--iterations",
        "1000000",
        "--seeds",
        "1",
        "--num-variables",
        "4",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    first = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run([*argv, "--overwrite", "--methods", "rloo-s"], stderr=subprocess.PIPE, text=True)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 1
    assert f"in use by another process (PID {first.pid})" in second.stderr and "Traceback" not in second.stderr
    assert json.loads((out / "config.json").read_text())["methods"] == ["indecater", "rloo-f", "rloo-s", "gs-st-f"]


def test_a_used_folder_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", CONFIG) as run:
        common.write_text(run.path / "log.csv", "epoch\n1\n")
    with pytest.raises(RunFolderError, match="already holds results \\(config.json, log.csv\\).*--resume.*--overwrite"):
        open_run(tmp_path / "run", CONFIG, resumable=True)
    with pytest.raises(RunFolderError, match="already holds results.*; pass --overwrite to start it again") as error:
        open_run(tmp_path / "run", CONFIG)
    assert "--resume" not in str(error.value)
    with open_run(tmp_path / "run", {**CONFIG, "digits": 8}, overwrite=True) as run:
        assert sorted(p.name for p in run.path.iterdir()) == [".lock", "config.json"]


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    open_run(tmp_path / "run", CONFIG).close()
    with pytest.raises(RunFolderError, match="--resume: .* has no checkpoint.pt to continue from"):
        open_run(tmp_path / "run", CONFIG, resume=True)


def test_resume_names_every_differing_key_and_allows_the_listed_ones(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", CONFIG) as run:
        run_folder.save_checkpoint(run.checkpoint, {"epoch": 1})
    changed = {"estimator": "rloo-s", "digits": 8, "epochs": 3, "lr": 0.1}
    with pytest.raises(RunFolderError) as error:
        open_run(tmp_path / "run", changed, resume=True, may_change=["epochs"])
    assert "differing: digits: 4 -> 8; estimator: 'indecater' -> 'rloo-s'; lr: '(absent)' -> 0.1" in str(error.value)
    with open_run(tmp_path / "run", {**CONFIG, "epochs": 3}, resume=True, may_change=["epochs"]) as run:
        assert run.resumed and json.loads((run.path / "config.json").read_text())["epochs"] == 3


def test_resume_takes_an_option_added_since_and_left_unset_as_no_difference(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", CONFIG) as run:
        run_folder.save_checkpoint(run.checkpoint, {"epoch": 1})
    with pytest.raises(RunFolderError, match=r"differing: estimator_lr: '\(absent\)' -> 0.01$"):
        open_run(tmp_path / "run", {**CONFIG, "estimator_lr": 0.01}, resume=True)
    with open_run(tmp_path / "run", {**CONFIG, "estimator_lr": None}, resume=True) as run:
        assert run.resumed


def test_stale_temporary_files_are_removed_on_open(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    stale = folder / f".checkpoint.pt.abc123{common.TEMPORARY_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    open_run(folder, CONFIG).close()
    assert not stale.exists()


def test_checkpoints_round_trip_with_weights_only(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(3.0)}, "history": [{"epoch": 1.0}], "clock": [0.5, 0.25], "epoch": 2}
    path = run_folder.save_checkpoint(tmp_path / "checkpoint.pt", state)
    loaded = run_folder.load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["history"] == state["history"]
    assert not list(tmp_path.glob(".*"))


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="at most one"):
        open_run(tmp_path / "run", CONFIG, resume=True, overwrite=True)


def test_command_refuses_a_used_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    argv = ["optimise", "--iterations", "2", "--seeds", "1", "--num-variables", "3", "--variance-every", "5"]
    assert main([*argv, "--threads", "1", "--out", str(out)]) == 0
    assert main([*argv, "--threads", "1", "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("catlog optimise: error: ") and "already holds results" in error[-1]
    assert "--resume" not in error[-1]  # optimise has no --resume


def test_bare_install_prints_one_line_naming_the_extra() -> None:
    """With the extra's modules unimportable, ``import catlog`` works and ``catlog`` says what to install."""
    code = textwrap.dedent("""
        import sys
        sys.modules.update(dict.fromkeys(["numpy", "tqdm", "matplotlib", "PIL"]))
        import catlog
        assert not any(name.startswith("catlog.experiments") for name in sys.modules), "core imported experiments"
        catlog.IndeCateR(2)
        from catlog.experiments.cli import main
        raise SystemExit(main(["dvae", "--help"]))
    """)
    # -W: torch itself warns at import when numpy is missing; that line is torch's, not ours.
    result = subprocess.run([sys.executable, "-W", "ignore::UserWarning", "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'catlog[experiments]'" in lines[0] and "numpy, tqdm" in lines[0]


def test_every_command_shows_defaults_and_the_estimator_vocabulary(capsys: pytest.CaptureFixture) -> None:
    from catlog.experiments import commands, estimators

    for command in commands.COMMANDS:
        with pytest.raises(SystemExit):
            main([command.name, "--help"])
        text = capsys.readouterr().out
        assert all(f"  {name}: " in text for name in estimators.NAMES), command.name
    main_help = commands.build_parser().format_help()
    assert "gs-st-f: straight-through Gumbel-Softmax, D*K*N samples (equal evaluations)" in main_help
    dvae_help = commands.build_parser()._subparsers._group_actions[0].choices["dvae"].format_help()
    for option in ("--dataset", "--estimator", "--lr", "--batch-size", "--data-dir", "--cache-dir"):
        block = dvae_help.split("\noptions:", 1)[1].split(f"  {option} ", 1)[1].split("\n  --", 1)[0]
        assert "(default: " in " ".join(block.split()), option


def test_keep_freed_memory_takes_on_glibc() -> None:
    import platform

    from catlog.experiments import allocator

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert allocator.keep_freed_memory() is expected
