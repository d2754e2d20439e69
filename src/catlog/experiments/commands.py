"""Every ``catlog`` subcommand, one parser built one way.

:func:`build_parser` adds a subparser per :class:`~catlog.experiments.options.Command` of
:data:`COMMANDS`, its options the fields of the command's config; :func:`run_command_line`
parses, builds the config (an :class:`~catlog.experiments.options.OptionError` becomes a
one-line usage error, exit status 2) and runs it (a data, run-folder or file-system error
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
    dvae_variance,
    estimators,
    generate,
    plan,
    policy_plot,
    sweep,
    synthetic_gradients,
    synthetic_optimise,
)
from catlog.experiments.data import DataError
from catlog.experiments.options import Command, OptionError, add_arguments, config_from_args
from catlog.experiments.run_folder import RunFolderError

COMMANDS: tuple[Command, ...] = (
    synthetic_gradients.COMMAND,
    synthetic_optimise.COMMAND,
    demo.COMMAND,
    addition.COMMAND,
    addition_variance.COMMAND,
    addition_plot.COMMAND,
    dvae.COMMAND,
    dvae_variance.COMMAND,
    dvae_plot.COMMAND,
    compare.COMMAND,
    sweep.COMMAND,
    plan.COMMAND,
    generate.COMMAND,
    policy_plot.COMMAND,
)
EXIT_RUN_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    """The ``catlog`` parser with one subparser per command of :data:`COMMANDS`."""
    epilog = estimators.describe()
    parser = argparse.ArgumentParser(
        prog="catlog",
        description="Experiments for the CatLog-Derivative gradient estimators.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub, command.config)
        sub.set_defaults(command_object=command, subparser=sub)
    return parser


def run_command_line(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, build the command's config and run it; returns the exit status."""
    args, unknown = build_parser().parse_known_args(argv)
    command: Command = args.command_object
    if unknown:
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        config = config_from_args(command.config, args)
    except OptionError as error:
        args.subparser.error(str(error))
    try:
        return int(command.run(config) or 0)
    except (DataError, RunFolderError, OSError) as error:
        print(f"catlog {command.name}: error: {error}", file=sys.stderr)
        return EXIT_RUN_ERROR
