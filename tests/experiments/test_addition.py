"""MNIST addition: sequences, classifier, f, loss, training steps, resume, command line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from catlog.experiments import addition, addition_model, training
from catlog.experiments.addition import AdditionConfig, AdditionTask, batch_loss, log_iterations
from catlog.experiments.addition_model import (
    DigitSequences,
    LeNet,
    addition_loss,
    digit_sequences,
    make_estimator,
    sum_indicator,
)
from catlog.experiments.cli import main
from catlog.experiments.distributed import DistributedContext
from catlog.experiments.run_folder import RunFolderError, open_on_main


def synthetic_digits(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` easy "digit images" ``[N, 28, 28]``: a bright bar whose row is the label, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = 0.1 * torch.rand(count, 28, 28, generator=generator)
    rows = 2 + 2 * labels
    images[torch.arange(count), rows] = 1.0
    images[torch.arange(count), rows + 1] = 1.0
    return images, labels


@pytest.mark.parametrize("count, digits", [(60, 4), (61, 4), (10, 12), (7, 3), (5, 1)])
def test_sequences_use_every_image_and_sum_labels(count: int, digits: int) -> None:
    images, labels = synthetic_digits(count)
    sequences = digit_sequences(images, labels, digits, torch.Generator().manual_seed(1))
    assert sequences.index.shape == (math.ceil(count / digits), digits)
    assert torch.equal(sequences.sums, labels[sequences.index].sum(dim=-1))
    used = sequences.index.flatten()
    assert set(used.tolist()) == set(range(count))
    # Only the completion of the last sequence repeats images, each at most once more per wrap.
    assert used.numel() - count == -count % digits
    images_b, sums_b = sequences.batch(torch.tensor([0, len(sequences) - 1]))
    assert images_b.shape == (2, digits, 28, 28)
    assert torch.equal(images_b[1, 0], images[sequences.index[-1, 0]])
    assert torch.equal(sums_b, sequences.sums[[0, -1]])


def test_sequences_shuffle_is_seeded() -> None:
    images, labels = synthetic_digits(40)
    first = digit_sequences(images, labels, 4, torch.Generator().manual_seed(3)).index
    again = digit_sequences(images, labels, 4, torch.Generator().manual_seed(3)).index
    other = digit_sequences(images, labels, 4, torch.Generator().manual_seed(4)).index
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first.flatten(), torch.arange(40))


def test_sequences_reject_bad_input() -> None:
    images, labels = synthetic_digits(8)
    with pytest.raises(ValueError, match="digits"):
        digit_sequences(images, labels, 0)
    with pytest.raises(ValueError, match="labels"):
        digit_sequences(images, labels[:5], 2)


def test_lenet_classifies_each_image_once() -> None:
    model = LeNet()
    images = torch.rand(3, 5, 28, 28)
    logits = model(images)
    assert logits.shape == (3, 5, 10)
    torch.testing.assert_close(logits[1, 2], model(images[1, 2]))
    assert sum(p.numel() for p in model.parameters()) == 44426


def test_lenet_equals_the_protocol_order_of_layers_with_the_same_weights() -> None:
    # The protocol's classifier applies each ReLU before its max-pool, in NCHW, with
    # contiguous weights; LeNet pools first and stores channels_last weights. A blank top, as
    # MNIST digits have, gives pooling windows with tied values.
    model = LeNet().double()
    images = torch.rand(6, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images[:, :10] = 0.0
    weights = [p.detach().clone().contiguous().requires_grad_() for p in model.parameters()]
    w1, b1, w2, b2, w3, b3, w4, b4, w5, b5 = weights
    functional = torch.nn.functional
    hidden = functional.max_pool2d(torch.relu(functional.conv2d(images[:, None], w1, b1)), 2)
    hidden = functional.max_pool2d(torch.relu(functional.conv2d(hidden, w2, b2)), 2).flatten(1)
    hidden = torch.relu(functional.linear(torch.relu(functional.linear(hidden, w3, b3)), w4, b4))
    expected = functional.linear(hidden, w5, b5)
    upstream = torch.randn(6, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits = model(images)
    torch.testing.assert_close(logits, expected)
    (logits * upstream).sum().backward()
    (expected * upstream).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in weights)
    for param, reference in zip(model.parameters(), weights):
        torch.testing.assert_close(param.grad, reference.grad)


def test_sum_indicator_on_hand_computed_cases() -> None:
    f = sum_indicator(torch.tensor([6, 0]))
    x = torch.tensor([[[1, 2, 3], [0, 0, 0]], [[6, 0, 0], [9, 9, 9]], [[5, 0, 0], [0, 0, 1]]])  # [M=3, B=2, D=3]
    assert torch.equal(f(x), torch.tensor([[True, True], [True, False], [False, False]]))
    assert torch.equal(f(x.float()), f(x))


def test_loss_on_hand_computed_cases() -> None:
    estimate = torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    loss = addition_loss(estimate)
    expected = (math.log(2.0) - math.log(1e-8) - math.log(1.0 + 1e-8)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    torch.testing.assert_close(estimate.grad, -1.0 / (3 * (estimate.detach() + 1e-8)))


def test_estimate_statistics() -> None:
    stats = addition.estimate_statistics(torch.tensor([0.0, 0.5, 1.0, 0.0]))
    assert stats["train_loss"] == pytest.approx((2 * -math.log(1e-8) + math.log(2.0)) / 4, rel=1e-6)
    assert stats["train_estimate"] == pytest.approx(0.375)
    assert stats["train_zero_estimates"] == 0.5


def test_log_iterations_are_log_spaced_within_the_first_epoch() -> None:
    points = sorted(log_iterations(1500, 8))
    assert points[0] == 1 and points[-1] < 1500
    ratios = [b / a for a, b in zip(points[3:], points[4:])]
    assert max(ratios) / min(ratios) < 1.2
    assert log_iterations(1, 8) == set() and log_iterations(100, 0) == set()


def exact_sum_probability(logits: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """``P(sum_d X_d = y)`` for independent digits: the digit distributions convolved, ``[B]``."""
    probs = logits.softmax(dim=-1)
    total = probs[:, 0]
    for d in range(1, probs.shape[1]):
        total = torch.nn.functional.conv1d(
            total[None], probs[:, d].flip(-1)[:, None], padding=9, groups=probs.shape[0]
        )[0]
    return total.gather(1, sums[:, None])[:, 0]


def test_the_batch_loss_with_the_exact_estimator_is_minus_log_probability_of_the_sum() -> None:
    import catlog

    images, labels = synthetic_digits(6)
    images, sums = images.view(2, 3, 28, 28), labels.view(2, 3).sum(dim=-1)
    model = LeNet().double()
    images = images.double()
    reference = LeNet().double()
    reference.load_state_dict(model.state_dict())
    expected = -torch.log(exact_sum_probability(reference(images), sums) + 1e-8).mean()
    expected.backward()
    loss, estimate = batch_loss(model, catlog.Exact(), images, sums)
    loss.backward()
    torch.testing.assert_close(estimate, exact_sum_probability(reference(images), sums).detach())
    assert addition_loss(estimate).item() == pytest.approx(expected.item(), rel=1e-9) == loss.item()
    for param, ref in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(param.grad, ref.grad)


@pytest.mark.parametrize("name", addition_model.ESTIMATORS)
def test_one_training_step_per_estimator(name: str) -> None:
    images, labels = synthetic_digits(15)
    sequences = digit_sequences(images, labels, 3, torch.Generator().manual_seed(0))
    model = LeNet()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = sequences.batch(torch.arange(len(sequences)))  # 5 sequences: a batch smaller than 10
    generator = torch.Generator().manual_seed(0)
    loss, estimate = batch_loss(model, make_estimator(name, 3, 50), *batch, generator)
    loss.backward()
    optimizer.step()
    assert estimate.shape == (5,) and ((estimate >= 0) & (estimate <= 1)).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_make_estimator_matches_the_protocol() -> None:
    assert make_estimator("rloo-f", 8).cost(8, 10) == (8 * 10 * 10, 8 * 10 * 10)
    assert make_estimator("indecater-pv", 8).cost(8, 10) == (8 * 10, 8 * 10 * 10)
    assert make_estimator("rloo-s", 8).cost(8, 10) == (10, 10)
    assert make_estimator("reinforce-s", 8, 3).cost(8, 10) == (3, 3)
    indecater = make_estimator("indecater", 8).cost(8, 10)
    assert indecater.samples == 10 and indecater.evaluations <= 8 * 10 * 10  # its own samples are reused
    with pytest.raises(ValueError, match="estimator"):
        make_estimator("gumbel", 4)
    with pytest.raises(ValueError, match="samples"):
        make_estimator("indecater", 4, 0)


def small_config(**changes: object) -> AdditionConfig:
    settings = {"digits": 2, "estimator": "indecater", "samples": 3, "lr": 3e-3, "epochs": 2, "early_logs": 3}
    return AdditionConfig(**{**settings, **changes})


def train_in(config: AdditionConfig, data: tuple[DigitSequences, DigitSequences]) -> list[dict[str, float]]:
    """Open the run folder ``config.out`` as the command does and train there; the log rows."""
    with open_on_main(config, "addition", DistributedContext(), training.MAY_CHANGE) as out:
        _, state = training.train(config, lambda: AdditionTask(config, *data), out, DistributedContext())
        return list(state.log)


def small_data(train_count: int = 130, test_count: int = 50) -> tuple[DigitSequences, DigitSequences]:
    generator = torch.Generator().manual_seed(0)
    train_images, train_labels = synthetic_digits(train_count, seed=1)
    test_images, test_labels = synthetic_digits(test_count, seed=2)
    return (
        digit_sequences(train_images, train_labels, 2, generator),
        digit_sequences(test_images, test_labels, 2, generator),
    )


def accuracies(history: list[dict[str, float]]) -> list[tuple[float, ...]]:
    keys = ("epoch", "iteration", "test_sum_accuracy", "test_digit_accuracy", "train_loss", "train_zero_estimates")
    return [tuple(row[key] for key in keys) for row in history]


def test_resume_continues_exactly_where_a_run_stopped(tmp_path) -> None:
    data = small_data()
    straight = train_in(small_config(out=tmp_path / "straight"), data)
    train_in(small_config(out=tmp_path / "split", epochs=1), data)
    resumed = train_in(small_config(out=tmp_path / "split", resume=True), data)
    assert accuracies(resumed) == accuracies(straight)
    assert len(straight) == 2 + len(log_iterations(7, 3))  # 65 sequences in batches of 10: 7 steps
    assert straight[-1]["train_cpu_s"] > 0 and straight[-1]["train_wall_s"] > 0


def test_resume_with_another_config_names_every_difference(tmp_path) -> None:
    data = small_data()
    train_in(small_config(out=tmp_path / "run", epochs=1), data)
    with pytest.raises(RunFolderError, match="--resume.*differing: digits: 2 -> 3; estimator: 'indecater' -> 'rloo-s'"):
        train_in(small_config(out=tmp_path / "run", digits=3, estimator="rloo-s", resume=True), data)


def test_training_learns_digits_from_sums_alone(tmp_path) -> None:
    """On easy synthetic digits the classifier learns from sums only: far above chance (0.1)."""
    train_data, test_data = small_data(train_count=400, test_count=100)
    history = train_in(small_config(out=tmp_path / "run", epochs=4, early_logs=0), (train_data, test_data))
    assert history[-1]["test_digit_accuracy"] > 0.5
    assert history[-1]["test_digit_accuracy"] > history[0]["test_digit_accuracy"]


def test_command_line_on_a_tiny_mnist_subset(shared_data_dir, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    args = ["addition", "-D", "3", "--estimator", "indecater-pv", "--samples", "2", "--train-limit", "61"]
    args += ["--test-limit", "20", "--data-dir", str(shared_data_dir), "--out", str(run_dir), "--threads", "1"]
    assert main(args) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["digits"] == 3 and config["estimator"] == "indecater-pv"
    with (run_dir / "log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[-1]["epoch"]) == 1.0 and int(rows[-1]["iteration"]) == 3  # 21 sequences: 10 + 10 + 1
    assert (run_dir / "checkpoint.pt").is_file()
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    capsys.readouterr()
    figure = tmp_path / "figure.png"
    assert main(["addition-plot", str(run_dir), "--out", str(figure)]) == 0
    table = capsys.readouterr().out
    assert figure.stat().st_size > 0 and "indecater-pv" in table
    with figure.with_suffix(".csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert summary[0]["epochs"] == "2.0" and summary[0]["train_images"] == "61"


def test_mnist_sequences_split_train_and_test(shared_data_dir) -> None:
    from catlog.experiments import data

    train_data, test_data = addition_model.load_mnist_sequences(12, 0, shared_data_dir, None, None)
    test_images, test_labels = data.load_images("mnist", "test", shared_data_dir)
    assert train_data.index.shape == (5000, 12) and test_data.index.shape == (834, 12)
    assert torch.equal(test_data.images, test_images)
    assert torch.equal(test_data.sums, test_labels[test_data.index].sum(dim=-1))
    assert torch.equal(test_data.index.flatten().unique(), torch.arange(10000))


def test_repeated_gradients_of_the_exact_estimator_have_no_variance() -> None:
    import catlog
    from catlog.experiments.addition_variance import variance_row
    from catlog.experiments.problems.addition import estimates_and_gradients

    logits = torch.randn(3, 2, 10, dtype=torch.float64)
    sums = torch.tensor([3, 9, 17])
    values, grads, loss_grads = estimates_and_gradients(catlog.Exact(), logits, sums, 5, 2, torch.Generator())
    leaf = logits.clone().requires_grad_()
    probability = exact_sum_probability(leaf, sums)
    (expected,) = torch.autograd.grad(probability.sum(), leaf)
    assert values.shape == (5, 3) and grads.shape == loss_grads.shape == (5, 60)
    torch.testing.assert_close(values, probability.detach().expand(5, 3))
    torch.testing.assert_close(grads, expected.flatten().expand(5, 60))
    scale = -1 / (3 * (probability.detach() + 1e-8))
    torch.testing.assert_close(loss_grads, (expected * scale[:, None, None]).flatten().expand(5, 60))
    row = variance_row("exact", 2, catlog.Exact(), values, grads, loss_grads)
    assert float(row["grad_variance"]) == 0.0 and row["zero_estimates"] == 0.0


def test_variance_command_on_real_digits(shared_data_dir, tmp_path) -> None:
    args = ["addition-variance", "-D", "2", "--estimators", "indecater", "rloo-s", "--repeats", "6", "--block", "4"]
    assert main([*args, "--data-dir", str(shared_data_dir), "--out", str(tmp_path), "--threads", "1"]) == 0
    with (tmp_path / "variance.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["estimator"] for row in rows] == ["indecater", "rloo-s"]
    assert all(float(row["grad_variance"]) > 0 for row in rows)


def test_legend_labels_are_unique_within_a_panel_only() -> None:
    from catlog.experiments import plotting

    keys = ["indecater, seed 0", "indecater, seed 0", "indecater, seed 0"]
    folders = [Path("d4-a"), Path("d8-a"), Path("d8-b")]
    assert plotting.run_labels(keys, folders, [4, 8, 8]) == [
        "indecater, seed 0",
        "indecater, seed 0 (d8-a)",
        "indecater, seed 0 (d8-b)",
    ]
    assert plotting.run_labels(keys[:2], folders[:2]) == ["indecater, seed 0 (d4-a)", "indecater, seed 0 (d8-a)"]


def write_addition_run(folder, digits: int, estimator: str, seed: int, accuracies: list[float]) -> None:
    """A run folder as `catlog addition` writes it: config.json and a log of one row per epoch."""
    folder.mkdir(parents=True)
    config = {"digits": digits, "estimator": estimator, "seed": seed, "train_limit": None}
    (folder / "config.json").write_text(json.dumps(config))
    with (folder / "log.csv").open("w", newline="") as handle:
        fields = ["epoch", "test_sum_accuracy", "test_digit_accuracy", "train_wall_s", "train_cpu_s"]
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        for epoch, accuracy in enumerate(accuracies, start=1):
            writer.writerow(dict(zip(fields, [epoch, accuracy, accuracy, epoch, epoch])))


def test_addition_plot_draws_seeds_as_median_and_range(tmp_path, capsys) -> None:
    """Three seeds of one (D, estimator) become one series: per epoch the median, min and max; a single
    run stays a run; the summary gets a table over seeds."""
    from catlog.experiments import addition_plot

    write_addition_run(tmp_path / "a0", 4, "rloo-f", 0, [0.1, 0.5, 0.9])
    write_addition_run(tmp_path / "a1", 4, "rloo-f", 1, [0.3, 0.2, 0.7])
    write_addition_run(tmp_path / "a2", 4, "rloo-f", 2, [0.2, 0.4, 0.8])
    write_addition_run(tmp_path / "b0", 4, "indecater", 0, [0.05, 0.6, 0.95])
    runs = [(folder, *addition_plot.load_run(folder)) for folder in sorted(tmp_path.iterdir())]
    by_estimator = {line.estimator: line for line in addition_plot.series_of(runs)}
    band, single = by_estimator["rloo-f"], by_estimator["indecater"]
    assert band.seeds == (0, 1, 2) and band.epochs == [1.0, 2.0, 3.0]
    assert band.accuracy == [0.2, 0.4, 0.8] and band.low == [0.1, 0.2, 0.7] and band.high == [0.3, 0.5, 0.9]
    assert single.low is None and single.accuracy == [0.05, 0.6, 0.95] and single.label == "indecater, seed 0"
    figure = tmp_path / "figure.png"
    assert main(["addition-plot", *map(str, sorted(tmp_path.iterdir())), "--out", str(figure)]) == 0
    assert "| 4 | rloo-f | 0 1 2 | 3.0 | 0.8 | 0.7 | 0.9 |" in capsys.readouterr().out
    assert figure.stat().st_size > 0
