"""The discrete VAE experiment: model maths, estimators on it, training loop, resume, command line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import catlog
from catlog.experiments import cli, data, dvae, dvae_plot, estimators, plotting, training
from catlog.experiments.dvae_model import (
    PROJECT_FROM_SAMPLES,
    DiscreteVAE,
    evaluate_negative_elbo,
    kl_to_uniform,
    negative_elbo,
    train_step,
)
from catlog.experiments.problems.dvae import problem as dvae_problem

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 784, generator=generator) < 0.2).double()


@pytest.mark.parametrize("categories", [2, 3])
@pytest.mark.parametrize("samples", [3, PROJECT_FROM_SAMPLES])  # l t elementwise, then h . (t W) + b . t
def test_negative_log_likelihood_is_bernoulli_cross_entropy(categories: int, samples: int) -> None:
    model = DiscreteVAE(num_latents=5, num_categories=categories).double()
    targets = torch.rand(4, 784, dtype=torch.float64)  # grey levels, as for Fashion-MNIST
    x = torch.randint(categories, (samples, 4, 5))
    z = F.one_hot(x, categories)[..., 1:].flatten(-2).double()
    logits = model.decoder_out(model.decoder_hidden(z))
    expected = F.binary_cross_entropy_with_logits(logits, targets.expand(samples, 4, 784), reduction="none").sum(-1)
    given = F.one_hot(x, categories).double() if model.one_hot else x
    assert torch.allclose(model.negative_log_likelihood(given, targets), expected, rtol=1e-10, atol=1e-9)


def test_kl_to_uniform_matches_torch_distributions() -> None:
    logits = torch.randn(3, 7, 4, dtype=torch.float64)
    q = torch.distributions.Categorical(logits=logits)
    uniform = torch.distributions.Categorical(logits=torch.zeros_like(logits))
    assert torch.allclose(kl_to_uniform(logits), torch.distributions.kl_divergence(q, uniform).sum(-1))
    assert torch.allclose(kl_to_uniform(torch.zeros(2, 7, 4)), torch.zeros(2), atol=1e-6)


@pytest.mark.parametrize("categories", [2, 3])
def test_negative_elbo_is_the_expected_reconstruction_loss_plus_the_kl(categories: int) -> None:
    """Against enumeration written here: ``sum_z q(z) (-log p(t | z)) + KL(q || uniform)`` with the
    bitwise Bernoulli cross-entropy and ``torch.distributions.kl_divergence``, in float64."""
    latents = 3
    model = DiscreteVAE(num_latents=latents, num_categories=categories).double()
    images = _images(4)
    states = torch.cartesian_prod(*[torch.arange(categories)] * latents)  # [K^D, D]
    z = F.one_hot(states, categories)[..., 1:].flatten(-2).double()
    pixels = model.decoder_out(model.decoder_hidden(z))  # [K^D, 784]
    reconstruction = F.binary_cross_entropy_with_logits(
        pixels.unsqueeze(1).expand(-1, 4, -1), images.expand(len(states), 4, 784), reduction="none"
    ).sum(-1)  # [K^D, B]
    q = torch.distributions.Categorical(logits=model.logits(images))  # batch [B, D]
    log_q = q.log_prob(states.unsqueeze(1)).sum(-1)  # [K^D, B]
    uniform = torch.distributions.Categorical(logits=torch.zeros(4, latents, categories, dtype=torch.float64))
    expected = (log_q.exp() * reconstruction).sum(0) + torch.distributions.kl_divergence(q, uniform).sum(-1)
    torch.testing.assert_close(negative_elbo(model, catlog.Exact(), images), expected, rtol=1e-10, atol=1e-8)


def test_evaluation_agrees_with_exact_enumeration() -> None:
    model = DiscreteVAE(num_latents=4).double()
    images = _images(6)
    with torch.no_grad():
        exact = float(negative_elbo(model, catlog.Exact(), images).mean())
        draws = torch.stack(
            [negative_elbo(model, catlog.REINFORCE(1), images) for _ in range(400)]
        )  # [400, 6] single-sample estimates
    standard_error = float(draws.mean(1).std() / math.sqrt(draws.shape[0]))
    estimate = evaluate_negative_elbo(model, images, num_samples=400, generator=torch.Generator().manual_seed(1))
    assert abs(estimate - exact) < 5 * standard_error
    assert standard_error > 0


def test_indecater_encoder_gradient_is_unbiased_on_the_dvae() -> None:
    model = DiscreteVAE(num_latents=3).double()
    images = _images(2)
    last_layer = slice(-model.encoder[-1].weight.numel() - model.encoder[-1].bias.numel(), None)
    problem = dvae_problem(model, images)
    exact = problem.gradients(catlog.Exact(), 1)[0, last_layer]
    generator = torch.Generator().manual_seed(2)
    estimates = problem.gradients(catlog.IndeCateR(1), 300, generator)[:, last_layer]
    error = (estimates.mean(0) - exact).abs()
    standard_error = estimates.std(0) / math.sqrt(estimates.shape[0])
    assert bool((error <= 5 * standard_error + 1e-9).all())
    assert float(standard_error.max()) > 0


def test_chunking_does_not_change_indecater() -> None:
    model = DiscreteVAE(num_latents=6).double()
    images = _images(3)
    whole, chunked = (
        dvae_problem(model, images).gradients(
            catlog.IndeCateR(2, chunk_size=chunk), 1, torch.Generator().manual_seed(3)
        )
        for chunk in (None, 2)
    )
    assert torch.allclose(whole, chunked, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "categories"),
    [(name, k) for name in dvae.ESTIMATORS for k in (2, 3) if k == 2 or not name.startswith("disarm")],
)
def test_training_step_with_every_estimator(name: str, categories: int) -> None:
    torch.manual_seed(0)
    model = DiscreteVAE(num_latents=5, num_categories=categories)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    estimator = dvae.make_estimator(name, 5, categories, samples=3)
    images = _images(4).float()
    before = [p.detach().clone() for p in model.parameters()]
    losses = [train_step(model, optimizer, estimator, images) for _ in range(3)]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses)
    for old, new in zip(before, model.parameters()):
        assert torch.isfinite(new).all() and not torch.equal(old, new)


def test_estimator_names_and_sample_counts() -> None:
    assert dvae.make_estimator("rloo-f", 200, 2).num_samples == 800
    assert dvae.make_estimator("gs-st-f", 10, 3).num_samples == 60
    assert dvae.make_estimator("gs-f", 10, 3).straight_through is False
    assert dvae.make_estimator("indecater", 200, 2, chunk_size=7).chunk_size == 7
    assert dvae.make_estimator("rloo-s", 200, 2, samples=5).num_samples == 5
    with pytest.raises(ValueError, match="^estimator: expected one of"):
        dvae.make_estimator("vimco", 200, 2)


def test_gradient_spread_is_the_mean_within_tensor_variance() -> None:
    # Entries [1, 3] (variance 1) and [0, 0, 6] (variance 8); the parameter without a gradient is left out.
    first, second, frozen = (torch.nn.Parameter(torch.zeros(n)) for n in (2, 3, 4))
    first.grad, second.grad = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0, 6.0])
    assert training.gradient_spread([first, second, frozen]) == pytest.approx((1.0 + 8.0) / 2)
    assert training.gradient_spread([frozen]) == 0.0


def _argv(out: Path, *extra: str) -> list[str]:
    return [
        "dvae",
        "--estimator",
        "indecater",
        "--latents",
        "6",
        "--batch-size",
        "50",
        "--log-every",
        "2",
        "--variance-every",
        "4",
        "--variance-repeats",
        "2",
        "--eval-samples",
        "3",
        "--threads",
        "1",
        "--out",
        str(out),
        *extra,
    ]


def _run(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    assert cli.main(_argv(out, *extra)) == 0
    return out


@pytest.fixture
def synthetic_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the data with 200 training and 100 + 100 test images of random pixels."""

    def load_split(
        dataset: str, data_dir: Path | None, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
    ) -> dict:
        images = _images(400, seed=5).to(dtype)
        return {"train": images[:200], "val": images[200:300], "test": images[300:]}

    monkeypatch.setattr(dvae, "load_split", load_split)
    monkeypatch.setattr(data, "check_dataset", lambda name, data_dir=None, **_: data_dir)


@pytest.mark.usefixtures("synthetic_mnist")
def test_resume_is_bit_for_bit(tmp_path: Path) -> None:
    straight = _run(tmp_path, "straight", "--epochs", "3")
    _run(tmp_path, "resumed", "--epochs", "1")
    resumed = _run(tmp_path, "resumed", "--epochs", "3", "--resume")
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (straight, resumed))
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    keys = ("iteration", "epoch", "train_neg_elbo", "val_neg_elbo", "variance", "gradient_spread")
    assert [{k: r[k] for k in keys} for r in a["state"]["log"]] == [{k: r[k] for k in keys} for r in b["state"]["log"]]
    assert a["state"]["iteration"] == 12 and len(a["state"]["log"]) == 6
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["test_neg_elbo"] == json.loads((straight / "summary.json").read_text())["test_neg_elbo"]


@pytest.mark.usefixtures("synthetic_mnist")
def test_time_budget_stops_training(tmp_path: Path) -> None:
    out = _run(tmp_path, "budget", "--time-budget", "0.05", "--budget-clock", "wall", "--epochs", "100")
    summary = json.loads((out / "summary.json").read_text())
    assert 1 <= summary["iterations"] < 400
    assert summary["train_wall_s"] >= 0.05


def test_command_line_on_mnist_and_plot(shared_data_dir: Path, tmp_path: Path) -> None:
    runs = [
        _run(
            tmp_path,
            name,
            "--estimator",
            name,
            "--data-dir",
            str(shared_data_dir),
            "--train-limit",
            "200",
            "--eval-limit",
            "100",
            "--epochs",
            "1",
        )
        for name in ("indecater", "gs-st-s")
    ]
    for run in runs:
        rows = (run / "log.csv").read_text().splitlines()
        assert rows[0].startswith("iteration,epoch,train_wall_s") and len(rows) == 3
        summary = json.loads((run / "summary.json").read_text())
        # Binarised MNIST under a fresh decoder: about 784 * log 2 nats minus what 4 steps learnt.
        assert 400 < summary["test_neg_elbo"] < 560 and summary["final_variance"] > 0
    names = ["indecater", "rloo-s", "disarm-s"]
    assert cli.main(["dvae-variance", str(runs[0]), "--estimators", *names, "--repeats", "3"]) == 0
    with open(runs[0] / "variance_at_checkpoint.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["estimator"] for row in rows] == names
    assert [row["samples"] for row in rows] == ["2", "2", "2"]  # DisARM: one pair
    # Same parameters, same batch: IndeCateR's variance is below RLOO's at equal samples.
    assert 0 < float(rows[0]["variance"]) < float(rows[1]["variance"])
    figure = tmp_path / "dvae.png"
    assert cli.main(["dvae-plot", *map(str, runs), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 10_000


@pytest.mark.usefixtures("synthetic_mnist")
def test_resume_refuses_another_config_and_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = _run(tmp_path, "run", "--epochs", "1")
    argv = ["dvae", "--estimator", "rloo-s", "--latents", "7", "--epochs", "2", "--out", str(out), "--resume"]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("catlog dvae: error: --resume:") and "latents: 6 -> 7" in error
    assert "estimator: 'indecater' -> 'rloo-s'" in error and "epochs" not in error
    (out / "checkpoint.pt").unlink()
    assert cli.main(argv) == 1  # the missing checkpoint is reported before any config difference
    assert "has no checkpoint.pt to continue from" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["latents"] == 6


@pytest.mark.usefixtures("synthetic_mnist")
def test_resume_refuses_a_checkpoint_of_an_older_version_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = _run(tmp_path, "run", "--epochs", "1")
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    del saved["schema"]  # as written before the one training loop
    torch.save(saved, out / "checkpoint.pt")
    capsys.readouterr()
    assert cli.main(_argv(out, "--epochs", "2", "--resume")) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("catlog dvae: error: --resume: ") and "checkpoint of an older catlog" in error[-1]


@pytest.mark.usefixtures("synthetic_mnist")
def test_a_run_that_fails_before_its_first_result_leaves_no_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise data.DataError("mnist: a damaged file")

    load_split = dvae.load_split
    monkeypatch.setattr(dvae, "load_split", fail)
    assert cli.main(_argv(tmp_path / "run", "--epochs", "1")) == 1
    assert not (tmp_path / "run" / "config.json").exists()
    monkeypatch.setattr(dvae, "load_split", load_split)
    _run(tmp_path, "run", "--epochs", "1")  # the corrected rerun is not refused as "already holds results"


@pytest.mark.usefixtures("synthetic_mnist")
def test_time_budget_stop_is_reported_in_the_epoch_it_happened(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _run(tmp_path, "budget", "--time-budget", "0.05", "--budget-clock", "wall", "--epochs", "100")
    assert "time budget reached in epoch 1 at iteration" in capsys.readouterr().out


def test_chunks_recomputed_in_backward_give_the_unchunked_gradient() -> None:
    """``IndeCateR(pathwise="all", chunk_size=...)`` evaluates each chunk of the loss again in the backward
    pass: the loss must build the same graph each time (it once cached ``t W`` on its first call, and the
    recomputation of that chunk saved fewer tensors: a CheckpointError)."""
    model = DiscreteVAE(num_latents=6).double()
    images = _images(3)
    gradients = []
    for chunk_size in (PROJECT_FROM_SAMPLES, None):
        model.zero_grad()
        estimator = catlog.IndeCateR(2, pathwise="all", chunk_size=chunk_size)
        negative_elbo(model, estimator, images, torch.Generator().manual_seed(5)).sum().backward()
        gradients.append([parameter.grad.clone() for parameter in model.parameters()])
    for chunked, whole in zip(*gradients):
        torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-12)


def test_plot_against_evaluations_scales_iterations_by_the_runs_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = sorted(Path(__file__).parents[2].glob("docs/runs/fig3/seed=0_dataset=mnist_estimator=*"))[:2]
    figures = []
    monkeypatch.setattr(dvae_plot.common, "save_figure", lambda fig, path: figures.append(fig) or path)
    dvae_plot.plot_runs(runs, Path("unused.png"), x_axis="evaluations")
    for run, line in zip(runs, figures[0].axes[0].get_lines()):
        config, rows = plotting.read_run(run)
        iterations = [float(row["iteration"]) for row in rows]
        assert list(line.get_xdata()) == [config["cost_per_image"]["evaluations"] * i for i in iterations]
    assert figures[0].axes[0].get_xscale() == "log"
    recorded = plotting.read_run(runs[0])[0]
    computed = {key: value for key, value in recorded.items() if key != "cost_per_image"}  # as runs write it now
    assert dvae_plot.evaluations_per_image(computed) == recorded["cost_per_image"]["evaluations"]


@pytest.mark.usefixtures("synthetic_mnist")
@pytest.mark.parametrize("name", ["relax-s", "rebar-s"])
def test_a_learned_control_variate_trains_with_the_model_and_resumes(tmp_path: Path, name: str) -> None:
    straight = _run(tmp_path, "straight", "--estimator", name, "--epochs", "2")
    _run(tmp_path, "resumed", "--estimator", name, "--epochs", "1")
    resumed = _run(tmp_path, "resumed", "--estimator", name, "--epochs", "2", "--resume")
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True) for run in (straight, resumed))
    fresh = dvae.make_estimator(name, 6, 2)
    initial = [p.detach() for p in estimators.learned_parameters(fresh)]
    assert len(a["estimator"]) == len(initial) > 0
    assert not all(
        torch.equal(p, q) for p, q in zip(a["estimator"], initial, strict=True)
    )  # the optimiser stepped them
    for p, q in zip(a["estimator"], b["estimator"], strict=True):
        assert torch.equal(p, q)
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
