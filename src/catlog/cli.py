"""The ``catlog`` command-line tool: one subcommand per experiment.

Each experiment module in :mod:`catlog.experiments` exposes
``register(subparsers)``, which adds its subcommands and sets ``func`` on the
parsed arguments. Modules are listed in :data:`EXPERIMENT_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

EXPERIMENT_MODULES: tuple[str, ...] = ("addition", "synthetic_gradients", "synthetic_optimise", "demo", "sweep", "dvae", "compare")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``catlog`` argument parser with every experiment's subcommands."""
    parser = argparse.ArgumentParser(
        prog="catlog",
        description="Experiments for the CatLog-Derivative gradient estimators.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in EXPERIMENT_MODULES:
        importlib.import_module(f"catlog.experiments.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``catlog`` command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
