"""``catlog policy-plot``: runs of ``catlog plan`` or ``catlog generate`` in one figure and one table.

Success rate, return (and held-out success rate where logged) against iterations, evaluations of
``f`` per context and training CPU seconds, the seeds of one estimator averaged; the table gives per
estimator the final metrics, the runs that reached a success rate of 0.5 and the gradient variance
at the measured checkpoints (:mod:`catlog.experiments.policy_training` draws and tabulates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catlog.experiments import plotting, policy_training
from catlog.experiments.options import Command, Options, option


@dataclass(frozen=True, kw_only=True)
class PolicyPlotConfig(Options):
    """Settings of ``catlog policy-plot``."""

    runs: tuple[Path, ...] = option(help="run folders of catlog plan or catlog generate")
    output: Path = option(Path("policy.png"), "PNG to write")
    title: str | None = option(None, "the figure's title", default_text="none")

    def __post_init__(self) -> None:
        super().__post_init__()
        plotting.check_run_folders(self.runs, "plan` or `catlog generate")


def run_plot(config: PolicyPlotConfig) -> int:
    """Draw the runs of ``config`` and print their summary table."""
    print(policy_training.summary_table(list(config.runs)))
    print(f"wrote {policy_training.plot_runs(list(config.runs), config.output, config.title)}")
    return 0


COMMAND = Command(
    "policy-plot",
    help="draw runs of plan or generate against iterations, evaluations, CPU time; print a table",
    description=__doc__ or "",
    config=PolicyPlotConfig,
    run=run_plot,
)
