"""Options declared once on the config classes, and bad inputs a newcomer tries: one-line errors naming the option."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from catlog.experiments import commands, common
from catlog.experiments.cli import main
from catlog.experiments.options import OptionError, Options, option, validate


def usage_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``catlog argv``, expect a usage error (exit 2) and return its one line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "".join(lines)
    assert lines[0].startswith(f"usage: catlog {argv[0]} ")  # the command's usage, not the top-level one
    return lines[-1]


@pytest.mark.parametrize("command", [command.name for command in commands.COMMANDS])
def test_every_default_is_shown_once(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out.split("\nestimators (", 1)[0]
    blocks = re.split(r"\n  (?=-)", text)
    assert len(blocks) > 2
    for block in blocks:
        assert " ".join(block.split()).count("(default:") <= 1, block


@dataclass(frozen=True, kw_only=True)
class Example(Options):
    count: int = option(3, "how many", minimum=1)
    rate: float = option(0.5, "a rate", above=0)
    names: tuple[str, ...] = option(("a",), "names", choices=("a", "b"))


def test_config_values_are_checked_when_built_in_code_too(tmp_path: Path) -> None:
    assert Example().count == 3
    cases = {
        "--count: expected a value >= 1, got 0": {"count": 0},
        "--rate: expected a value > 0, got -1": {"rate": -1.0},
        "--rate: expected a finite number, got nan": {"rate": float("nan")},
        "--names: expected one of a, b, got 'c'": {"names": ("a", "c")},
    }
    for message, values in cases.items():
        with pytest.raises(OptionError, match=re.escape(message)):
            Example(**values)  # type: ignore[arg-type]
    validate(Example(names=("b", "a")))


def test_demo_with_an_unknown_device(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    error = usage_error(["demo", "--device", "bogus", "--out", str(tmp_path / "run")], capsys)
    assert "--device: expected a torch device such as cpu or cuda:0, got 'bogus'" in error


@pytest.mark.parametrize("command", ["demo", "dvae"])
def test_out_naming_an_existing_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    existing = tmp_path / "results.txt"
    existing.write_text("mine")
    error = usage_error([command, "--out", str(existing)], capsys)
    assert f"--out: expected a run folder, got {str(existing)!r}, an existing file" in error
    assert existing.read_text() == "mine"


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_gradients_with_a_temperature_not_above_zero(
    temperature: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    error = usage_error(["gradients", "--temperature", temperature, "--out", str(tmp_path / "run")], capsys)
    assert f"--temperature: expected a value > 0, got {float(temperature)}" in error


def test_gradients_with_an_estimator_that_does_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["gradients", "--estimators", "disarm-s", "--configs", "3x3", "--out", str(tmp_path / "run")]
    error = usage_error(argv, capsys)
    assert "--estimators: disarm-s does not apply to D = 3, K = 3" in error and "binary variables" in error
    assert not (tmp_path / "run").exists()


def test_dvae_with_an_estimator_that_does_not_apply_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    error = usage_error(["dvae", "--estimator", "disarm-s", "--categories", "3", "--out", str(out)], capsys)
    assert "--estimator: disarm-s does not apply to D = 200, K = 3" in error
    assert not (out / "config.json").exists()


@pytest.mark.parametrize(
    ("value", "message"), [("nan", "expected a finite number, got nan"), ("-1", "expected a value > 0, got -1.0")]
)
def test_dvae_with_a_learning_rate_that_cannot_work(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    error = usage_error(["dvae", f"--lr={value}", "--out", str(tmp_path / "run")], capsys)
    assert f"--lr: {message}" in error


@pytest.mark.parametrize("command", ["dvae", "addition", "addition-variance"])
def test_data_dir_naming_a_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_file = tmp_path / "mnist.gz"
    data_file.write_bytes(b"")
    assert main([command, "--data-dir", str(data_file), "--out", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"catlog {command}: error: --data-dir: expected an existing folder, got {str(data_file)!r}, which is a file"
    ]
    assert not (tmp_path / "run").exists()


def test_unknown_option_shows_the_commands_usage(capsys: pytest.CaptureFixture) -> None:
    error = usage_error(["demo", "--bogus"], capsys)
    assert error == "catlog demo: error: unrecognized arguments: --bogus"


def test_sweep_on_an_empty_spec_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "empty.toml"
    spec.write_text("")
    error = usage_error(["sweep", str(spec)], capsys)
    assert error == "catlog sweep: error: spec: expected a 'command' (a catlog subcommand or a list), got none"


def test_a_run_folder_that_becomes_unwritable_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder made read-only mid-run (simulated: root may write anywhere) gives one line, and a
    run that wrote no result leaves no config.json behind."""
    out = tmp_path / "run"
    argv = ["gradients", "--configs", "2x2", "--runs", "2", "--estimators", "indecater", "--out", str(out)]

    def refuse(figure: object, path: Path, *args: object) -> Path:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(common, "save_figure", refuse)
    assert main(argv) == 1
    stderr = capsys.readouterr().err
    error = [line for line in stderr.splitlines() if line.startswith("catlog")]
    assert "Traceback" not in stderr and len(error) == 1
    assert error[0] == f"catlog gradients: error: [Errno 13] Permission denied: {str(out / 'fig1_separable_2x2.png')!r}"
    assert not (out / "config.json").exists()
    monkeypatch.undo()
    assert main(argv) == 0  # the corrected rerun does not find "already holds results"


@pytest.mark.parametrize(
    "argv",
    [
        ["gradients", "--configs", "2x2", "--runs", "2", "--estimators", "indecater"],
        ["demo", "--runs", "2", "--iterations", "1", "--seeds", "1"],
    ],
)
def test_a_used_folder_suggests_resume_only_where_the_command_has_it(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = ["--out", str(tmp_path / "run")]
    assert main([*argv, *out]) == 0
    assert main([*argv, *out]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "already holds results" in error and "pass --overwrite" in error and "--resume" not in error
