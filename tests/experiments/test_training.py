"""The one training loop: its checkpoint schema, old checkpoints and old run folders."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import catlog
from catlog.experiments import common, data, dvae, run_folder, training
from catlog.experiments.cli import main
from catlog.experiments.dvae_model import DiscreteVAE

RUNS = Path(__file__).resolve().parents[2] / "docs" / "runs"


def old_checkpoint(path: Path, model: torch.nn.Module) -> Path:
    """A checkpoint as ``catlog addition`` wrote it before the one training loop (no schema key)."""
    state = {"model": model.state_dict(), "optimizer": {}, "clock": [1.0, 1.0], "history": [], "epoch": 1}
    return common.write_torch(path, state)


def test_an_old_checkpoint_is_refused_for_resume_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    config = {"digits": 4, "estimator": "indecater"}
    with run_folder.open_run(tmp_path / "run", config) as run:
        path = old_checkpoint(run.checkpoint, DiscreteVAE(4, 2))
    saved = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(run_folder.RunFolderError) as error:
        run_folder.open_run(tmp_path / "run", {**config, "epochs": 2}, resume=True, may_change=["epochs"])
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--resume: {path} is a checkpoint of an older catlog")
    assert "schema 1, expected 2" in message and "--overwrite" in message
    assert (tmp_path / "run" / "config.json").read_text() == saved


def test_an_old_checkpoints_model_still_loads(tmp_path: Path) -> None:
    trained = DiscreteVAE(4, 2)
    path = old_checkpoint(tmp_path / "checkpoint.pt", trained)
    fresh = run_folder.load_model(path, DiscreteVAE(4, 2))
    for name, tensor in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


def test_old_dvae_run_folders_still_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = sorted((RUNS / "fig3").iterdir())[:3]
    figure = tmp_path / "dvae.png"
    assert main(["dvae-plot", *map(str, runs), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 10_000


def test_old_addition_run_folders_still_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = sorted((RUNS / "fig4").iterdir())
    figure = tmp_path / "addition.png"
    assert main(["addition-plot", *map(str, runs), "--out", str(figure)]) == 0
    assert figure.stat().st_size > 10_000 and "indecater" in capsys.readouterr().out


def test_resuming_an_old_run_folder_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "check_dataset", lambda name, data_dir=None, **_: data_dir)
    old = sorted((RUNS / "fig4").iterdir())[0]
    copy = shutil.copytree(old, tmp_path / old.name)
    assert main(["addition", "--out", str(copy), "--resume"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"catlog addition: error: --resume: {copy} has no checkpoint.pt")


def test_estimator_lr_puts_the_learned_parameters_in_a_group_of_their_own() -> None:
    model = torch.nn.Linear(3, 1)
    task = SimpleNamespace(model=model, estimator=catlog.RELAX(2, torch.nn.Linear(6, 1)))
    alone = training.optimizer_of(dvae.DvaeConfig(lr=1e-4), task)
    assert [group["lr"] for group in alone.param_groups] == [1e-4]
    grouped = training.optimizer_of(dvae.DvaeConfig(lr=1e-4, estimator_lr=1e-2), task)
    assert [group["lr"] for group in grouped.param_groups] == [1e-4, 1e-2]
    assert grouped.param_groups[1]["params"] == list(task.estimator.parameters())
    no_learned = SimpleNamespace(model=model, estimator=catlog.RLOO(2))
    assert len(training.optimizer_of(dvae.DvaeConfig(lr=1e-4, estimator_lr=1e-2), no_learned).param_groups) == 1
