"""Experiments of the paper, each registering ``catlog`` subcommands."""
