"""The ``catlog`` command: says in one line (exit status 1) when the ``experiments`` extra is missing,
else runs a subcommand."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

EXTRA_MODULES: tuple[str, ...] = ("numpy", "tqdm", "matplotlib", "PIL")
EXIT_MISSING_EXTRA = 1


def missing_modules() -> list[str]:
    """The modules of the ``experiments`` extra that cannot be imported."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``catlog`` command line; returns the process exit status."""
    missing = missing_modules()
    if missing:
        print(
            f"catlog: the command-line tool needs the experiments extra (missing: {', '.join(missing)}); "
            "install it with: pip install 'catlog[experiments]'",
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    from catlog.experiments.commands import run_command_line

    return run_command_line(argv)


if __name__ == "__main__":
    raise SystemExit(main())
