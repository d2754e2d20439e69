"""``catlog sweep``: grid expansion, local parallel runs, resuming, the table, submitit's local executor."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catlog.experiments import cli, commands, sweep
from catlog.experiments.options import config_from_args

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# A stand-in experiment: counts its calls; for --score 13 it leaves a checkpoint and fails
# unless resumed; writes summary.json into --out.
FAKE_RUN = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
with open(Path(sys.argv[0]).with_suffix(".calls"), "a") as calls:
    calls.write(" ".join(args) + "\\n")
score = int(args[args.index("--score") + 1])
out.mkdir(parents=True, exist_ok=True)
if score == 13 and "--resume" not in args:
    (out / "checkpoint.pt").write_text("half-way")
    sys.exit(3)
summary = {"value": score * 2, "nested": {"flag": "--fast" in args}, "resumed": "--resume" in args, "history": [1, 2],
           "methods": [{"method": "a", "best": score}, {"method": "b", "best": -score}]}
(out / "summary.json").write_text(json.dumps(summary))
"""

# A stand-in plot command: lists the run folders it was given.
FAKE_PLOT = """
import sys
from pathlib import Path
Path(sys.argv[-1]).write_text("\\n".join(sorted(Path(run).name for run in sys.argv[1:-1])))
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    (tmp_path / "fake_plot.py").write_text(FAKE_PLOT)
    return script


def calls(script: Path) -> list[str]:
    path = script.with_suffix(".calls")
    return path.read_text().splitlines() if path.exists() else []


def write_spec(
    tmp_path: Path,
    scores: list[int],
    fixed: str = "fast = true",
    extra: str = "",
    modes: tuple[str, ...] = ("x", "y z"),
) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(tmp_path / 'fake_run.py'))}]\n"
        f"{extra}\n[fixed]\n{fixed}\n[grid]\nscore = {scores}\nmode = {list(modes)}\n"
        f"[plot]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(tmp_path / 'fake_plot.py'))}]\n"
        'args = ["{runs}", "{out}/plotted.txt"]\n'
    )
    return spec


def read_table(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_option_argv_renders_values_flags_and_lists() -> None:
    options = {"time_budget": 60, "fast": True, "slow": False, "skip": None, "methods": ["a", "b"], "lr": 0.5}
    assert sweep.option_argv(options) == ["--time-budget", "60", "--fast", "--methods", "a", "b", "--lr", "0.5"]


def test_expand_gives_one_run_per_combination(tmp_path: Path) -> None:
    spec = sweep.parse_spec(
        {"command": "demo", "fixed": {"threads": 1}, "grid": {"seed": [0, 1, 2], "estimator": ["rloo-s", "a/b"]}}
    )
    runs = sweep.expand(spec, tmp_path)
    assert len(runs) == 6
    assert [run.name for run in runs[:2]] == ["seed=0_estimator=rloo-s", "seed=0_estimator=a-b"]
    assert runs[1].argv == (
        sys.executable,
        "-m",
        "catlog.experiments",
        "demo",
        "--threads",
        "1",
        "--seed",
        "0",
        "--estimator",
        "a/b",
        "--out",
        str(tmp_path / "seed=0_estimator=a-b"),
    )
    assert sweep.expand(sweep.parse_spec({"command": "demo"}), tmp_path)[0].name == "run"


def test_nproc_per_node_runs_under_torchrun(tmp_path: Path) -> None:
    run = sweep.expand(sweep.parse_spec({"command": "dvae", "nproc_per_node": 2}), tmp_path)[0]
    assert run.argv[:6] == (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m")
    with pytest.raises(ValueError, match="nproc_per_node"):
        sweep.parse_spec({"command": ["prog"], "nproc_per_node": 2})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"grid": {}}, "'command'"),
        ({"command": "demo", "grids": {}}, "expected keys among"),
        ({"command": "demo", "grid": {"seed": []}}, "grid.seed: expected a non-empty list"),
        ({"command": "demo", "grid": {"seed": 1}}, "grid.seed: expected a non-empty list"),
        ({"command": "demo", "grid": {"seed": [1]}, "fixed": {"seed": 2}}, "seed in both"),
        ({"command": "demo", "fixed": {"out": "x"}}, "no 'out' option"),
        ({"command": [], "grid": {}}, "command: expected"),
        ({"command": "demo", "collect": "summary.json"}, "collect: expected a list"),
        ({"command": "demo", "resume": True}, "resume: expected a file name"),
        ({"command": "demo", "grid": {"e": ["a/b", "a-b"]}}, "distinct folder names"),
    ],
)
def test_bad_specs_are_refused(tmp_path: Path, raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sweep.expand(sweep.parse_spec(raw), tmp_path)


def test_load_spec_reads_toml_and_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text('command = "demo"\n[grid]\nseed = [1, 2]\n')
    assert sweep.load_spec(path).grid == {"seed": [1, 2]}
    with pytest.raises(ValueError, match=r"expected a \.toml"):
        sweep.load_spec(tmp_path / "spec.json")


def test_yaml_spec_needs_pyyaml(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("command: demo\ngrid:\n  seed: [1, 2]\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="PyYAML"):
            sweep.load_spec(path)
    else:
        assert sweep.load_spec(path).grid == {"seed": [1, 2]}


def test_local_sweep_runs_in_parallel_resumes_and_collects(fake: Path, tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, [1, 13]), tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out), "--jobs", "2"]) == 1  # score 13 fails
    assert len(calls(fake)) == 4
    rows = read_table(out)
    assert [(row["score"], row["mode"], row["status"]) for row in rows] == [
        ("1", "x", "complete"),
        ("1", "y z", "complete"),
        ("13", "x", "failed (exit 3)"),
        ("13", "y z", "failed (exit 3)"),
    ]
    assert rows[0]["value"] == "2" and rows[0]["nested.flag"] == "True" and "history" not in rows[0]
    assert float(rows[0]["wall_s"]) > 0 and float(rows[0]["cpu_s"]) >= 0
    assert (out / "plotted.txt").read_text().splitlines() == ["score=1_mode=x", "score=1_mode=y-z"]
    assert (out / "score=13_mode=x" / "stderr.log").exists()

    # Rerunning skips the complete runs and retries the failed ones.
    assert cli.main(["sweep", str(spec), "--out", str(out), "--jobs", "2"]) == 1
    assert len(calls(fake)) == 6 and all("13" in call for call in calls(fake)[4:])

    # A changed command line is a different run: everything reruns.
    spec = write_spec(tmp_path, [1, 2], fixed="fast = false")
    assert cli.main(["sweep", str(spec), "--out", str(out), "--jobs", "2"]) == 0
    assert len(calls(fake)) == 10
    assert [row["nested.flag"] for row in read_table(out)] == ["False"] * 4


def test_resume_continues_a_run_that_left_a_checkpoint(fake: Path, tmp_path: Path) -> None:
    spec, out = write_spec(tmp_path, [13], extra='resume = "checkpoint.pt"', modes=("x",)), tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out)]) == 1
    assert cli.main(["sweep", str(spec), "--out", str(out)]) == 0
    assert [call.endswith("--resume") for call in calls(fake)] == [False, True]
    [row] = read_table(out)
    assert row["status"] == "complete" and row["resumed"] == "True"
    # A checkpoint left by another command line is not resumed.
    spec = write_spec(tmp_path, [13], fixed="fast = false", extra='resume = "checkpoint.pt"', modes=("x",))
    assert cli.main(["sweep", str(spec), "--out", str(out)]) == 1
    assert not calls(fake)[-1].endswith("--resume")


def test_dry_run_and_collect_only_run_nothing(fake: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec, out = write_spec(tmp_path, [1]), tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("fake_run.py") == 2
    assert cli.main(["sweep", str(spec), "--out", str(out), "--collect-only"]) == 1
    assert calls(fake) == [] and {row["status"] for row in read_table(out)} == {"not run"}


def test_collect_key_path_gives_rows_per_element(fake: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, [4], extra='collect = ["missing.json", "summary.json:methods"]')
    out = tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out), "--jobs", "2"]) == 0
    rows = read_table(out)
    assert [(row["mode"], row["method"], row["best"]) for row in rows] == [
        ("x", "a", "4"),
        ("x", "b", "-4"),
        ("y z", "a", "4"),
        ("y z", "b", "-4"),
    ]
    assert {row["result_file"] for row in rows} == {"summary.json:methods"}


def test_submitit_local_backend(fake: Path, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    spec, out = write_spec(tmp_path, [5], modes=("x",)), tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out), "--backend", "submitit-local"]) == 0
    assert [row["value"] for row in read_table(out)] == ["10"]
    assert any((out / "submitit").iterdir())
    assert cli.main(["sweep", str(spec), "--out", str(out), "--backend", "submitit-local"]) == 0
    assert len(calls(fake)) == 1


def test_real_command_optimise(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'command = "optimise"\ncollect = ["optimise.json:summary"]\n'
        "[fixed]\niterations = 10\nseeds = 1\nnum_variables = 6\nmethods = ['indecater']\n"
        "log_every = 5\nvariance_every = 5\nvariance_repeats = 2\nthreads = 1\n"
        "[grid]\nseed = [3]\n"
    )
    out = tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--out", str(out)]) == 0
    [row] = read_table(out)
    assert row["seed"] == "3" and row["status"] == "complete" and row["result_file"] == "optimise.json:summary"
    assert "indecater" in json.dumps(row).lower()


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("sweep_*.toml")), ids=lambda path: path.name)
def test_example_specs_give_command_lines_catlog_accepts(spec: Path, tmp_path: Path) -> None:
    runs = sweep.expand(sweep.load_spec(spec), tmp_path)
    parser = commands.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    command = runs[0].argv[3]
    if command not in subcommands:
        pytest.skip(f"catlog {command} is not registered in this checkout")
    for run in runs:
        args = parser.parse_args(list(run.argv[3:]))
        config_from_args(args.command_object.config, args)  # the typed config accepts the values too


SLEEPER = """
import os, sys, time
from pathlib import Path
out = Path(sys.argv[sys.argv.index("--out") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / "child.pid").write_text(str(os.getpid()))
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_the_sweep_and_a_second_sweep_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    spec = tmp_path / "spec.toml"
    command = [sys.executable, str(tmp_path / "sleeper.py")]
    spec.write_text(f"command = {json.dumps(command)}\n[grid]\nseed = [0]\n")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "catlog.experiments", "sweep", str(spec), "--out", str(out)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = out / "seed=0" / "child.pid"
    try:
        # write_text creates the file before it writes: wait for its content, not for the file.
        assert _wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip() != "")
        child = int(pid_file.read_text())
        # A rerun while the sweep lives stops at once instead of starting the run a second time.
        second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and f"in use by another process (PID {first.pid})" in second.stderr
        assert _alive(child)
    finally:
        first.kill()  # kill -9: the sweep cannot clean up, the kernel signals the child
        first.wait()
    assert _wait_for(lambda: not _alive(child), 30)
