"""``python -m catlog`` runs the command-line tool."""

from catlog.cli import main

raise SystemExit(main())
