"""Smoke tests of the scripts in ``benchmarks/`` on tiny settings (they time nothing that is asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

import catlog

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

FAKE_TF_WORKER = """
import json, sys
print(json.dumps({"ready": True, "intra": int(sys.argv[1]), "tf": "fake"}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    answer = [0.002] * request["n"]
    print(json.dumps({"wall": answer, "cpu": 0.004} if request.get("cpu") else answer), flush=True)
"""


@pytest.fixture
def load_script(monkeypatch: pytest.MonkeyPatch):
    """Import a script of ``benchmarks/`` as a module (with ``benchmarks/`` on ``sys.path`` for ``import bench``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_side_by_side_interleaves_both_workers(tmp_path: Path, load_script) -> None:
    """Our worker runs the bench.py step; a fake TF worker answers 2 ms per call, so the ratio is ours / 2 ms."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "worker_tf3.py").write_text(FAKE_TF_WORKER)
    side_by_side = load_script("side_by_side")
    options = ["--tf-python", sys.executable, "--tools", str(tmp_path / "tools"), "--reference", str(tmp_path)]
    options += ["--config", "fig1-12x3", "--estimator", "IndeCateR", "--rounds", "3", "--block-seconds", "0"]
    assert side_by_side.main([*options, "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "side_by_side.json").read_text())
    plain, row = result["rows"]  # one row per process setting of ours, against the same TF blocks
    assert (plain["settings"], row["settings"]) == ("plain", "experiments")
    assert plain["tf_ms"] == row["tf_ms"] and plain["rounds"] == 3
    assert (row["config"], row["estimator"], row["tf_case"], row["rounds"]) == (
        "fig1-12x3",
        "IndeCateR 1",
        "fig1-12x3:ICR1",
        3,
    )
    assert row["tf_ms"] == pytest.approx(2.0)
    assert row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
    assert row["ratio_median"] == pytest.approx(row["ours_ms"] / 2.0, rel=1.0)
    assert row["tf_cpu_ms"] == pytest.approx(4.0) and row["ours_cpu_ms"] > 0
    assert row["cpu_ratio_median"] == pytest.approx(row["ours_cpu_ms"] / 4.0, rel=1.0)
    settings = result["settings"]
    assert settings["ours_threads"] == 1 and settings["tf_intra_op_threads"] == settings["tf_inter_op_threads"] == 1
    assert (tmp_path / "out" / "side_by_side.csv").read_text().startswith("config,estimator,settings,tf_case,")


@pytest.mark.parametrize("mode", ["f", "step"])
def test_side_by_side_compiled_step_fills_a_softmax_gradient(load_script, mode: str) -> None:
    """A compiled step (aot_eager: no C++ toolchain needed) of IndeCateR(1) at figure 1, validation on (``f``)
    or off (``step``, as the worker sets it), leaves a finite logits gradient whose rows sum to zero (the
    gradient through a softmax), not zero everywhere."""
    side_by_side = load_script("side_by_side")
    bench = sys.modules["bench"]
    (index,) = [i for i, case in enumerate(bench.CASES) if case.tf_case == "fig1-12x3:ICR1"]
    catlog.Estimator.set_default_validate_args(mode != "step")  # restored by conftest
    step, problem = side_by_side.our_step(bench.CASES[index], torch.device("cpu"), torch.float32, mode, "aot_eager")
    step()
    step()
    (logits,) = problem.parameters
    assert logits.grad is not None and logits.grad.shape == (12, 3) and bool(logits.grad.isfinite().all())
    assert logits.grad.abs().sum() > 0
    torch.testing.assert_close(logits.grad.sum(-1), torch.zeros(12), atol=1e-5, rtol=0)
    torch._dynamo.reset()


def test_side_by_side_compiles_f_only_where_f_is_a_plain_function(load_script) -> None:
    side_by_side = load_script("side_by_side")
    bench = sys.modules["bench"]
    (index,) = [i for i, case in enumerate(bench.CASES) if case.tf_case == "dvae:RLOO2"]
    with pytest.raises(ValueError, match="--compile f: expected a figure 1 or 2 config"):
        side_by_side.our_step(bench.CASES[index], torch.device("cpu"), torch.float32, "f")


def test_every_case_names_a_tf_case_of_its_config(load_script) -> None:
    """The TF worker's case names: ``<config>:<estimator><samples>`` with the worker's config names."""
    bench = load_script("bench")
    tf_config = {"addition-4": "add4", "addition-16": "add16"}
    for case in bench.CASES:
        config, estimator = case.tf_case.split(":")
        assert config == tf_config.get(case.config, case.config)
        assert estimator.rstrip("0123456789") in {"ICR", "ICRPV", "REINFORCE", "RLOO", "GS"}


def test_cost_growth_runs_on_one_axis(tmp_path: Path, load_script) -> None:
    """Rows of ``f`` per point are ``N (1 + D (K - 1)) B`` and the figure is written."""
    cost_growth = load_script("cost_growth")
    options = [
        "--axis",
        "K",
        "--no-memory",
        "--min-time",
        "0",
        "--min-repeats",
        "1",
        "--max-repeats",
        "1",
        "--threads",
        "1",
    ]
    assert cost_growth.main([*options, "--figure", str(tmp_path / "growth.png"), "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cost_growth.json").read_text())["rows"]
    assert [row["K"] for row in rows] == list(cost_growth.AXES["K"])
    assert all(row["rows"] == row["N"] * (1 + row["D"] * (row["K"] - 1)) * row["B"] for row in rows)
    assert (tmp_path / "growth.png").stat().st_size > 0


def test_host_syncs_runs_on_cpu(load_script, capsys: pytest.CaptureFixture[str]) -> None:
    """On CPU the check counts the ops that read back: none in the four estimators' steps
    with validation off, and it finds the ones that validation makes."""
    host_syncs = load_script("host_syncs")
    assert host_syncs.main(["--config", "fig1-12x3", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["IndeCateR", "REINFORCE", "RLOO", "GS"]
    assert all(line.endswith("no read-back op") for line in lines[1:])
    problem = host_syncs.bench.CONFIGS["fig2"](torch.device("cpu"), torch.float32)
    message = host_syncs.synchronises(problem, catlog.IndeCateR(2, validate_args=True), torch.device("cpu"))
    assert message is not None and "_local_scalar_dense" in message


def test_control_variates_runs_on_tiny_settings(tmp_path: Path, load_script) -> None:
    control_variates = load_script("control_variates")
    options = ["--problems", "binary", "quadratic", "--repeats", "3", "--train-steps", "1", "--rounds", "1"]
    assert control_variates.main([*options, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "control_variates.json").read_text())
    labels = [row["estimator"] for row in results["quadratic"]]
    assert "IndeCateR(2) + Taylor(4 draws)" in labels and "RLOO(34)" in labels and "RELAX(2)" in labels
    assert all(row["max |bias| / SE"] >= 0 for row in results["binary"])


def test_structured_step_times_scater_beside_rloo_at_equal_evaluations(tmp_path: Path, load_script) -> None:
    pytest.importorskip("gymnasium")
    structured = load_script("structured_step")
    assert structured.main(["--samples", "1", "--rounds", "2", "--calls", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "structured_step.json").read_text())
    assert result["plan FrozenLake 8x8"]["evaluations"] == 1 + 20 * 3
    assert result["generate arithmetic"]["evaluations"] == 1 + 5 * 13
    assert all(ratio > 0 for name in structured.PROBLEMS for ratio in result[name]["cpu"])


def test_scater_control_variate_runs_on_tiny_settings(load_script, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("scater_control_variate")
    assert script.main(["--repeats", "4", "--fit-steps", "1", "--dtype", "float32"]) == 0
    table = capsys.readouterr().out
    assert "SCateR(2) + Fitted()" in table and "RLOO(38)" in table and "exact completions" in table


def test_peers_relax_runs_on_tiny_settings(tmp_path: Path, load_script) -> None:
    """Where pydrobert-pytorch and storchastic are installed (the ``peers`` extra); storchastic's
    patches of torch are undone outside its calls."""
    pytest.importorskip("pydrobert.torch")
    pytest.importorskip("entmax")
    pytest.importorskip("pyro")
    is_tensor, to = torch.is_tensor, torch.Tensor.to
    peers = load_script("peers_relax")
    options = ["--problems", "3x2", "--repeats", "4", "--train-steps", "1", "--out", str(tmp_path)]
    assert peers.main(options) == 0
    assert torch.is_tensor is is_tensor and torch.Tensor.to is to
    results = json.loads((tmp_path / "peers_relax.json").read_text())
    labels = [row["estimator"] for row in results["3x2 trained"]]
    assert {"REBAR pydrobert", "REBAR storchastic", "RELAX pydrobert", "RELAX storchastic"} <= set(labels)
