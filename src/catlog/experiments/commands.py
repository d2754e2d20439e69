"""Every ``catlog`` subcommand, one parser built one way.

Each experiment module lists its :class:`~catlog.experiments.common.Command` objects in
``COMMANDS``. For each, :func:`build_parser` adds a subparser whose ``--help`` shows
every option's help and default and the estimator vocabulary; :func:`run_command_line`
parses, builds the command's typed config (an :class:`~catlog.experiments.common.OptionError`
becomes a one-line usage error, exit status 2) and runs it (a data or run-folder error
becomes one line on standard error, exit status 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from catlog.experiments import (
    addition,
    addition_plot,
    addition_variance,
    compare,
    demo,
    dvae,
    dvae_plot,
    estimators,
    generate,
    plan,
    policy_training,
    sweep,
    synthetic_gradients,
    synthetic_optimise,
)
from catlog.experiments.common import Command, OptionError
from catlog.experiments.data import DataError
from catlog.experiments.run_folder import RunFolderError

COMMANDS: tuple[Command, ...] = (
    *synthetic_gradients.COMMANDS,
    *synthetic_optimise.COMMANDS,
    *demo.COMMANDS,
    *addition.COMMANDS,
    *addition_variance.COMMANDS,
    *addition_plot.COMMANDS,
    *dvae.COMMANDS,
    *dvae_plot.COMMANDS,
    *compare.COMMANDS,
    *sweep.COMMANDS,
    *plan.COMMANDS,
    *generate.COMMANDS,
    *policy_training.COMMANDS,
)
EXIT_RUN_ERROR = 1


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and every option's default after its help."""


def build_parser() -> argparse.ArgumentParser:
    """The ``catlog`` parser with one subparser per command of :data:`COMMANDS`."""
    from catlog.experiments.common import add_common_options

    epilog = estimators.describe()
    parser = argparse.ArgumentParser(
        prog="catlog",
        description="Experiments for the CatLog-Derivative gradient estimators.",
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=epilog,
            formatter_class=HelpFormatter,
        )
        command.add_options(sub)
        if command.common:
            add_common_options(sub)
        sub.set_defaults(command_object=command, subparser=sub)
    return parser


def run_command_line(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, build the command's config and run it; returns the exit status."""
    args = build_parser().parse_args(argv)
    command: Command = args.command_object
    try:
        config = command.config(args)
    except OptionError as error:
        args.subparser.error(str(error))
    try:
        return int(command.run(config) or 0)
    except (DataError, RunFolderError) as error:
        print(f"catlog {command.name}: error: {error}", file=sys.stderr)
        return EXIT_RUN_ERROR
