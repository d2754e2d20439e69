"""``python -m catlog.experiments`` runs the ``catlog`` command-line tool."""

from catlog.experiments.cli import main

raise SystemExit(main())
